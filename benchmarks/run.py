"""convc's speed benchmark: the compiler and its models side by side with other exporters'.

    python benchmarks/run.py [--quick] [--nets NAME ...] [--exporters NAME ...] [--no-exporters]

For each net in benchmarks/nets/ (the five reference nets, unchanged) it measures:

* ``convc build`` as a whole process, launch to written .onnx (median of 5), and its peak
  resident memory;
* with the exporters' virtualenvs present (``bash benchmarks/exporters/setup.sh`` makes them;
  found automatically), the same net exported by each other exporter as a whole process,
  launch to written .onnx (median of 3): Keras's own ``model.export(format="onnx")`` on
  torch (keras-torch) and on TensorFlow (keras-tf), tf_keras with ``tf2onnx.convert.from_keras``
  (tf_keras-tf2onnx), and the net written in ``torch.nn`` with ``torch.onnx.export``'s dynamo
  exporter (torch-native) and its TorchScript one (torch-native-ts); see
  benchmarks/exporters/README.md.
  All of them and convc load one set of random weights (a Keras ``.weights.h5``), and every
  exporter's output must agree with convc's model on one random input (max abs difference);
* each model's node count, Transposes, and latency in ONNX Runtime on the CPU, all the models
  of a net in one process: batch 1, default session options except one shared intra-op pool
  of 2 threads (per-session pools would spin against one another on 2 cores), warm-up, then
  timed runs in blocks, round-robin across the models so that drift hits all alike; median,
  p10, p90 and GFLOP/s (FLOPs are 2 x multiply-adds of the convolutions);
* ``convc check`` as a whole process, its ratio to one ORT inference, and the same after
  taking off start-up: the median excess over a ``convc check`` of a one-layer net run just
  before it, pair by pair (``import convc.cli`` alone is reported too);
* an ORT profile (time by kernel type) of convc's model and the fastest exporter's for
  volume3d and wavenet_like1d;
* build time of generated stacks of 1,000 and 10,000 layers (linear scaling).

Without the exporters' virtualenvs it measures convc alone and says what it skipped. Results
go to benchmarks/results.json and benchmarks/results.md.
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
ROOT = HERE.parent
NETS = HERE / "nets"
EXPORT_SCRIPT = HERE / "exporters" / "export.py"

# Exporter -> the virtualenv (under benchmarks/) that runs benchmarks/exporters/export.py for
# it, and that script's arguments.
EXPORTERS = {
    "keras-torch": (".venv-exporters", ["--exporter", "keras-torch"]),
    "keras-tf": (".venv-exporters-tf", ["--exporter", "keras-tf"]),
    "tf_keras-tf2onnx": (".venv-exporters-tf", ["--exporter", "tf_keras-tf2onnx"]),
    "torch-native": (
        ".venv-exporters",
        ["--exporter", "torch-native", "--torch-exporter", "dynamo"],
    ),
    "torch-native-ts": (
        ".venv-exporters",
        ["--exporter", "torch-native", "--torch-exporter", "torchscript"],
    ),
}
PROFILED = ("volume3d", "wavenet_like1d")
THREADS = 2

# The fastest exporter per net as the speed issue quotes it (2 cores, onnxruntime 1.32 CPU,
# batch 1): kept for reference only, beside the figures this script measures.
ISSUE_QUOTED = {
    "unet_like2d": {"gflop": 0.52, "ms": 4.7, "nodes": 16, "export_s": 3.4},
    "mobilenet_like": {"gflop": 0.56, "ms": 3.7, "nodes": 24, "export_s": 3.8},
    "wavenet_like1d": {"gflop": 0.66, "ms": 9.3, "nodes": 24, "export_s": 4.3},
    "volume3d": {"gflop": 2.26, "ms": 89.0, "nodes": 11, "export_s": 4.8},
    "deep_stack2d": {"gflop": 3.77, "ms": 32.0, "nodes": 402, "export_s": 12.6},
}

# Peak RSS as VmHWM, the high-water mark of the process's own memory map: ru_maxrss would also
# count the benchmark's own memory, which the child inherits across fork and exec.
_MEASURE_BUILD = (
    "import resource, sys; from convc.cli import main; code = main(sys.argv[1:]); "
    "status = open('/proc/self/status').read().split('VmHWM:')[1:]; "
    "peak = status[0].split()[0] if status else "
    "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
    "print(peak, file=sys.stderr); sys.exit(code)"
)


def convc_env() -> dict[str, str]:
    """The environment of convc's processes: this tree's convc, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # A user's installed convc has its bytecode cached; where the environment forbids writing
    # it (as this workplace's does), every process would compile convc's sources first.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed_process(args: list[str], repeats: int) -> tuple[float, int]:
    """Median wall time of a convc command as a fresh process, and its peak RSS (KiB)."""
    times, peak = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE_BUILD, *args],
            capture_output=True,
            text=True,
            env=convc_env(),
        )
        times.append(time.perf_counter() - start)
        last = (done.stderr.strip().splitlines() or [""])[-1]
        if done.returncode not in (0, 1) or not last.isdigit():
            raise RuntimeError(f"convc {' '.join(args)} failed:\n{done.stderr}")
        peak = max(peak, int(last))
    return statistics.median(times), peak


def paired_check_s(net: Path, trivial: Path, pairs: int) -> tuple[float, float]:
    """``convc check`` of a net as a whole process (median), and the median of its excess over
    a ``convc check`` of a one-layer net run just before it: each pair sees the same machine,
    where two medians taken minutes apart differ by more than the small nets' checks take."""
    totals, excesses = [], []
    for _ in range(pairs):
        startup, _ = timed_process(["check", str(trivial)], 1)
        total, _ = timed_process(["check", str(net)], 1)
        totals.append(total)
        excesses.append(total - startup)
    return statistics.median(totals), statistics.median(excesses)


def startup_s(repeats: int) -> float:
    """Median wall time of a process that only imports convc's command line."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import convc.cli"], check=True, env=convc_env())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_seconds() -> tuple[float, float]:
    """(all CPUs' busy seconds, this process's and its children's CPU seconds) so far."""
    import resource

    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    own = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    return (sum(fields[:8]) - idle) / tick, own


def foreign_load(before: tuple[float, float], seconds: float) -> float:
    """Cores kept busy by other processes since ``before`` (a cpu_seconds() reading)."""
    busy, own = cpu_seconds()
    return max(0.0, (busy - before[0]) - (own - before[1])) / max(seconds, 1e-9)


def wait_for_quiet(limit_s: float, threshold: float = 0.2) -> float:
    """Wait (up to ``limit_s``) until other processes use under ``threshold`` cores over 3 s;
    returns the seconds waited. Timings taken beside a test suite mean little."""
    start = time.perf_counter()
    while True:
        before = cpu_seconds()
        time.sleep(3)
        load = foreign_load(before, 3)
        waited = time.perf_counter() - start
        if load < threshold or waited >= limit_s:
            if waited > 4:
                print(f"  waited {waited:.0f} s for a quiet machine (other load {load:.2f})")
            return waited


def exporter_python(name: str) -> Path | None:
    python = HERE / EXPORTERS[name][0] / "bin" / "python"
    return python if python.exists() else None


def run_export_script(python: Path, args: list[str]) -> tuple[float, dict]:
    """One run of exporters/export.py as a fresh process: its wall time and its JSON report."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), str(EXPORT_SCRIPT), *args], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise RuntimeError(" | ".join(tail) or f"exit status {done.returncode}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def gflop(model) -> float:
    """2 x multiply-adds of the convolution layers' applications, batch 1."""
    from convc.specs import ConvSpec

    total = 0
    for node in model.nodes:
        c = node.spec
        if not isinstance(c, ConvSpec):
            continue
        kernel = math.prod(c.kernel_size)
        first = c.data_format == "channels_first"
        in_spatial = node.input_shape[2:] if first else node.input_shape[1:-1]
        out_positions = math.prod(node.output_shape[2:] if first else node.output_shape[1:-1])
        cin = node.input_shape[1] if first else node.input_shape[-1]
        if c.kind == "conv":
            total += out_positions * c.filters * kernel * cin // c.groups
        elif c.kind == "transpose":
            total += math.prod(in_spatial) * cin * c.filters * kernel
        elif c.kind == "depthwise":
            total += out_positions * cin * c.depth_multiplier * kernel
        else:
            total += out_positions * cin * c.depth_multiplier * (kernel + c.filters)
    return 2 * total / 1e9


def session(path: Path, profile_prefix: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.use_per_session_threads = False  # the process's one pool: see set_thread_pool
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def set_thread_pool() -> None:
    """One intra-op pool of THREADS threads for every session of this process. Each session's
    own pool would keep spinning after its runs and steal the cores from the next model."""
    import onnxruntime as ort

    ort.set_global_thread_pool_sizes(THREADS, 1)


def feed_for(spec_shape, x, layout: str):
    """The input for a model: ``x`` in the .conv's layout, or moved to channels first."""
    import numpy as np

    shape = [d if isinstance(d, int) else 1 for d in spec_shape]
    if list(x.shape) != shape and layout.startswith("channels_first"):
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    if list(x.shape) != shape:
        raise ValueError(f"input shape {shape} fits neither layout of {list(x.shape)}")
    return x


def ort_latency(
    models: dict[str, tuple[Path, str]], x, runs: int, warmup: int, blocks: int
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Latency samples (ms) of each model, timed in blocks round-robin across the models; and
    each model's output for ``x``."""
    sessions, outputs = {}, {}
    for name, (path, layout) in models.items():
        s = session(path)
        spec = s.get_inputs()[0]
        feed = {spec.name: feed_for(spec.shape, x, layout)}
        outputs[name] = s.run(None, feed)[0]
        sessions[name] = (s, feed)
    for s, feed in sessions.values():
        for _ in range(warmup):
            s.run(None, feed)
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    per_block = max(1, runs // blocks)
    for block in range(blocks):
        # Alternate the order too, so that no model always follows the same one.
        order = list(sessions) if block % 2 == 0 else list(reversed(sessions))
        for name in order:
            s, feed = sessions[name]
            for _ in range(per_block):
                start = time.perf_counter()
                s.run(None, feed)
                samples[name].append((time.perf_counter() - start) * 1000)
    return samples, outputs


def ort_profile(path: Path, x, layout: str, runs: int, warmup: int, scratch: Path) -> dict:
    """Where one model's time goes in ORT: kernel time by op type (after ORT's own graph
    rewrites, so fused and layout ops such as ReorderInput show as ORT runs them)."""
    s = session(path, profile_prefix=str(scratch / f"profile-{path.stem}"))
    spec = s.get_inputs()[0]
    feed = {spec.name: feed_for(spec.shape, x, layout)}
    for _ in range(warmup + runs):
        s.run(None, feed)
    events = json.loads(Path(s.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    cutoff = starts[warmup]
    by_op: dict[str, dict] = {}
    nodes: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < cutoff:
            continue
        op = e["args"].get("op_name", "?")
        entry = by_op.setdefault(op, {"us": 0, "events": 0})
        entry["us"] += e["dur"]
        entry["events"] += 1
        node = nodes.setdefault(e["name"][: -len("_kernel_time")], {"op": op, "us": 0})
        node["us"] += e["dur"]
        shapes = e["args"].get("output_type_shape") or [{}]
        node["output"] = next(iter(shapes[0].values()), None)
    kernel_us = sum(v["us"] for v in by_op.values())
    ops = [
        {
            "op": op,
            "ms_per_run": round(v["us"] / runs / 1000, 3),
            "share": round(v["us"] / kernel_us, 3),
            "nodes": v["events"] // runs,
        }
        for op, v in sorted(by_op.items(), key=lambda item: -item[1]["us"])
    ]
    top = sorted(nodes.items(), key=lambda item: -item[1]["us"])[:5]
    return {
        "runs": runs,
        "kernel_ms_per_run": round(kernel_us / runs / 1000, 3),
        "by_op": ops,
        "top_nodes": [
            {
                "node": name,
                "op": v["op"],
                "ms_per_run": round(v["us"] / runs / 1000, 3),
                "output": v.get("output"),
            }
            for name, v in top
        ],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low, high = math.floor(index), math.ceil(index)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def latency_summary(samples: list[float], work: float, blocks: int) -> tuple[dict, float]:
    """Median, p10, p90, and the median of each block (samples come block after block)."""
    median = statistics.median(samples)
    size = len(samples) // blocks
    summary = {
        "median": round(median, 3),
        "p10": round(percentile(samples, 0.1), 3),
        "p90": round(percentile(samples, 0.9), 3),
        "runs": len(samples),
        "block_medians": [
            round(statistics.median(samples[i * size : (i + 1) * size]), 3) for i in range(blocks)
        ],
    }
    return summary, round(work / (median / 1000), 1)


def op_types(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(path).graph.node]


def graph_counts(path: Path) -> tuple[int, int]:
    import onnx

    graph = onnx.load(path).graph
    return len(graph.node), sum(n.op_type == "Transpose" for n in graph.node)


def stack_text(layers: int) -> str:
    return "Input(shape=(32, 8))\n" + "Conv1D(8, 3, padding='same', activation='relu')\n" * layers


def heavy_text(layers: int = 24) -> str:
    """A net that is nearly all weights: 24 Conv2D(512, 3) hold 226 MB of float32 weights."""
    return (
        "Input(shape=(16, 16, 512), batch_size=1)\n" + "Conv2D(512, 3, padding='same')\n" * layers
    )


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--nets", nargs="*", default=None, help="only these nets")
    parser.add_argument(
        "--exporters", nargs="*", choices=list(EXPORTERS), default=None, help="only these"
    )
    parser.add_argument("--no-exporters", action="store_true", help="measure convc alone")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=600,
        metavar="S",
        help="before each net, wait up to S seconds for other processes to leave the CPUs",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import onnx

    from convc.compiler import resolve_text

    set_thread_pool()
    if args.quick:
        repeats, export_repeats, runs, warmup, blocks = 2, 1, 20, 3, 4
    else:
        repeats, export_repeats, runs, warmup, blocks = 5, 3, 200, 20, 10
    nets = sorted(NETS.glob("*.conv"))
    if args.nets:
        nets = [n for n in nets if n.stem in args.nets]
    results: dict = {"nets": {}, "scaling": {}, "skipped": [], "profiles": {}}
    wanted = [] if args.no_exporters else (args.exporters or list(EXPORTERS))
    exporters = {name: exporter_python(name) for name in wanted}
    for name, python in exporters.items():
        if python is None:
            results["skipped"].append(
                f"{name}: benchmarks/{EXPORTERS[name][0]} is absent "
                "(bash benchmarks/exporters/setup.sh makes it)"
            )
    if args.no_exporters:
        results["skipped"].append("other exporters: --no-exporters")
    exporters = {name: python for name, python in exporters.items() if python is not None}
    versions: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        start_s = startup_s(repeats)
        trivial = scratch / "trivial.conv"
        trivial.write_text("Input(shape=(8, 1))\nConv1D(1, 1)\n")
        trivial_check_s, _ = timed_process(["check", str(trivial)], repeats)
        results["startup"] = {
            "import_convc_cli_s": round(start_s, 3),
            "trivial_check_s": round(trivial_check_s, 3),
        }
        for net in nets:
            waited = wait_for_quiet(args.wait_quiet)
            phase = (cpu_seconds(), time.perf_counter())
            model = resolve_text(net.read_text())
            work = gflop(model)
            entry: dict = {"gflop": round(work, 3), "exporters": {}}
            weights = scratch / f"{net.stem}.weights.h5"
            if exporters:
                python = next(iter(exporters.values()))
                run_export_script(python, [str(net), "--save-weights", str(weights)])
                entry["weights"] = "random, drawn by exporters/export.py (.weights.h5), shared"
            else:
                entry["weights"] = "convc's initializers, seed 0"
            out = scratch / f"{net.stem}.convc.onnx"
            build = ["build", str(net), "-o", str(out)]
            if exporters:
                build += ["--weights", str(weights)]
            build_s, build_kib = timed_process(build, repeats)
            nodes, transposes = graph_counts(out)
            entry.update(
                build_s=round(build_s, 3),
                build_peak_mib=round(build_kib / 1024, 1),
                weights_mib=round(model.parameter_count * 4 / 2**20, 2),
                nodes=nodes,
                transposes=transposes,
            )
            models = {"convc": (out, "as the .conv")}
            # convc's default target is portable; --target ort is the graph made for this very
            # runtime. Where the two differ in their nodes, the ort build is timed too.
            ort_out = scratch / f"{net.stem}.convc-ort.onnx"
            timed_process([*build[:3], str(ort_out), *build[4:], "--target", "ort"], 1)
            entry["target"] = "default (portable)"
            entry["target_ort_same_ops"] = op_types(ort_out) == op_types(out)
            if not entry["target_ort_same_ops"]:
                models["convc-ort"] = (ort_out, "as the .conv")
            for name, python in exporters.items():
                path = scratch / f"{net.stem}.{name}.onnx"
                export_args = [str(net), str(path), *EXPORTERS[name][1], "--weights", str(weights)]
                try:
                    walls, report = [], {}
                    for _ in range(export_repeats):
                        wall, report = run_export_script(python, export_args)
                        walls.append(wall)
                except RuntimeError as error:
                    entry["exporters"][name] = {"error": str(error)}
                    print(f"{net.stem}: {name} failed: {error}", flush=True)
                    continue
                versions[name] = report.get("versions", {})
                nodes, transposes = graph_counts(path)
                entry["exporters"][name] = {
                    "variant": report.get("variant"),
                    "fallbacks": report.get("failures", []),
                    "input_layout": report.get("input_layout"),
                    "export_s": round(statistics.median(walls), 3),
                    "export_call_s": report.get("export_s"),
                    "nodes": nodes,
                    "transposes": transposes,
                }
                models[name] = (path, report.get("input_layout", ""))
            shape = [d if d is not None else 1 for d in model.input.shape]
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            entry["other_load_cores"] = {
                "waited_s": round(waited, 1),
                "exports": round(foreign_load(phase[0], time.perf_counter() - phase[1]), 2),
            }
            wait_for_quiet(args.wait_quiet)
            phase = (cpu_seconds(), time.perf_counter())
            samples, outputs = ort_latency(models, x, runs, warmup, blocks)
            entry["other_load_cores"]["ort"] = round(
                foreign_load(phase[0], time.perf_counter() - phase[1]), 2
            )
            entry["ort_ms"], entry["gflops_per_s"] = latency_summary(samples["convc"], work, blocks)
            reference = outputs["convc"]
            entry["output_max_abs"] = float(np.abs(reference).max())
            for name, (_, layout) in models.items():
                if name == "convc":
                    continue
                if name == "convc-ort":
                    e = entry.setdefault("convc_target_ort", {})
                    e["nodes"], e["transposes"] = graph_counts(models[name][0])
                else:
                    e = entry["exporters"][name]
                e["ort_ms"], e["gflops_per_s"] = latency_summary(samples[name], work, blocks)
                got = outputs[name]
                if layout.startswith("channels_first"):
                    got = np.moveaxis(got, 1, -1)
                e["max_abs_diff"] = (
                    float(np.abs(got - reference).max()) if got.shape == reference.shape else None
                )
            timed = {
                n: e["ort_ms"]["median"] for n, e in entry["exporters"].items() if "ort_ms" in e
            }
            if timed:
                best = min(timed, key=timed.get)
                entry["best_exporter"] = best
                entry["convc_over_best"] = round(entry["ort_ms"]["median"] / timed[best], 3)
                # The same ratio block by block (the models of a block ran back to back): its
                # spread says how far the run-wide ratio can be trusted.
                pairs = zip(
                    entry["ort_ms"]["block_medians"],
                    entry["exporters"][best]["ort_ms"]["block_medians"],
                    strict=True,
                )
                per_block = sorted(a / b for a, b in pairs)
                entry["convc_over_best_blocks"] = [
                    round(per_block[0], 3),
                    round(per_block[-1], 3),
                ]
            check_s, beyond_startup_s = paired_check_s(net, trivial, repeats + 2)
            ort_s = entry["ort_ms"]["median"] / 1000
            entry.update(
                check_s=round(check_s, 3),
                check_beyond_startup_s=round(beyond_startup_s, 3),
                check_over_ort=round(check_s / ort_s, 1),
                check_less_startup_over_ort=round(beyond_startup_s / ort_s, 1),
            )
            if net.stem in PROFILED:
                profiled = {"convc": models["convc"]}
                if timed:
                    profiled[entry["best_exporter"]] = models[entry["best_exporter"]]
                results["profiles"][net.stem] = {
                    name: ort_profile(path, x, layout, runs // 4, warmup, scratch)
                    for name, (path, layout) in profiled.items()
                }
            results["nets"][net.stem] = entry
            line = ", ".join(
                f"{n} {e['ort_ms']['median']:.2f} ms"
                for n, e in entry["exporters"].items()
                if "ort_ms" in e
            )
            print(
                f"{net.stem}: build {build_s:.2f} s, {entry['nodes']} nodes, "
                f"ORT {entry['ort_ms']['median']:.2f} ms" + (f"; {line}" if line else ""),
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
        source = scratch / "heavy.conv"
        source.write_text(heavy_text())
        build_s, build_kib = timed_process(["build", str(source), "-o", str(scratch / "h.onnx")], 1)
        weights_mib = (scratch / "h.onnx").stat().st_size / 2**20  # all but a few KiB is weights
        results["memory"] = {
            "weights_mib": round(weights_mib, 1),
            "build_s": round(build_s, 2),
            "peak_mib": round(build_kib / 1024, 1),
            "bound_mib": round(3 * weights_mib + 150, 1),
        }
        print(f"weight-heavy net: {results['memory']}", flush=True)
    results["summary"] = summary(results)
    results["issue_quoted_fastest_exporter"] = ISSUE_QUOTED
    import onnxruntime

    results["machine"] = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "convc_commit": git_commit(),
        "exporter_versions": versions,
        "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
        "protocol": (
            f"batch 1, CPU, one shared intra-op pool of {THREADS} threads; {warmup} warm-up "
            f"runs each, then {runs} timed runs each in {blocks} blocks, round-robin across "
            "the models of a net (order reversed every other block)"
        ),
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (HERE / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def summary(results: dict) -> dict:
    """The speed issue's targets, judged on this run's figures."""
    nets = results["nets"]
    ratios = {n: r["convc_over_best"] for n, r in nets.items() if "convc_over_best" in r}
    out: dict = {"convc_over_best": ratios}
    if ratios:
        out["geomean_convc_over_best"] = round(geomean(list(ratios.values())), 3)
        out["nets_slower_than_best"] = sorted(n for n, v in ratios.items() if v > 1)
        out["nets_within_noise"] = sorted(
            n
            for n in ratios
            if nets[n]["convc_over_best_blocks"][0] <= 1 <= nets[n]["convc_over_best_blocks"][1]
        )
        out["target_every_net_at_most_best"] = not out["nets_slower_than_best"]
        out["target_geomean_at_most_0.9"] = out["geomean_convc_over_best"] <= 0.9
    out["target_build"] = all(
        r["build_s"] < (1.0 if n == "deep_stack2d" else 0.5) for n, r in nets.items()
    )
    # Compared without Transposes: the torch-native models take channels-first input, and the
    # issue allows a channels_last stack its 2 boundary Transposes (checked separately).
    fewest = {
        n: min(e["nodes"] - e["transposes"] for e in r["exporters"].values() if "nodes" in e)
        for n, r in nets.items()
        if any("nodes" in e for e in r["exporters"].values())
    }
    if fewest:
        out["nets_with_more_nodes_than_fewest_exporter"] = sorted(
            n
            for n, least in fewest.items()
            if nets[n]["nodes"] - nets[n]["transposes"] > least or nets[n]["transposes"] > 2
        )
        out["target_fewest_nodes"] = not out["nets_with_more_nodes_than_fewest_exporter"]
    if "memory" in results:
        memory = results["memory"]
        out["target_build_memory"] = memory["peak_mib"] < memory["bound_mib"]
    out["target_check_within_20x_ort_plus_startup"] = all(
        r["check_less_startup_over_ort"] <= 20 for r in nets.values()
    )
    return out


def ms(o: dict) -> str:
    return f"{o['median']:.2f} [{o['p10']:.2f}, {o['p90']:.2f}]"


def markdown(results: dict) -> str:
    m = results["machine"]
    names = sorted({e for r in results["nets"].values() for e in r["exporters"]})
    lines = [
        f"Measured {m['date']} with `{m['command']}` (convc {m['convc_commit']}): "
        f"{m['cpu_count']} cores ({m['processor']}), Python {m['python']}, onnxruntime "
        f"{m['onnxruntime']} CPU. Protocol: {m['protocol']}. Before each net the run waits for "
        "other processes to leave the CPUs; the last column gives the cores they still kept "
        "busy while the net was timed.",
        "",
    ]
    for name, v in sorted(m["exporter_versions"].items()):
        lines.append(f"- {name}: " + ", ".join(f"{k} {v[k]}" for k in sorted(v)))
    lines += [
        "",
        "### ONNX Runtime latency, ms: median [p10, p90]",
        "",
        "| net | GFLOP | convc | " + " | ".join(names) + " | convc / best [blocks' range] "
        "| other load |",
        "|---|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for net, r in results["nets"].items():
        cells = []
        for name in names:
            e = r["exporters"].get(name, {})
            cells.append(ms(e["ort_ms"]) if "ort_ms" in e else "failed" if e else "—")
        ratio = "—"
        if "best_exporter" in r:
            low, high = r["convc_over_best_blocks"]
            ratio = f"{r['convc_over_best']:.3f} [{low:.2f}, {high:.2f}] ({r['best_exporter']})"
        load = f"{r['other_load_cores']['ort']:.2f}"
        row = [net, f"{r['gflop']:.2f}", ms(r["ort_ms"]), *cells, ratio, load]
        lines.append("| " + " | ".join(row) + " |")
    s = results["summary"]
    if "geomean_convc_over_best" in s:
        slower = ", ".join(s["nets_slower_than_best"]) or "none"
        ties = ", ".join(s["nets_within_noise"]) or "none"
        lines += [
            "",
            f"Geometric mean of convc / best exporter over {len(s['convc_over_best'])} nets: "
            f"**{s['geomean_convc_over_best']:.3f}** (target at most 0.90: "
            f"{'met' if s['target_geomean_at_most_0.9'] else 'not met'}); nets where convc is "
            f"slower than the best exporter: {slower}; nets where some blocks have convc faster "
            f"and others slower (a tie within this run's noise): {ties}.",
        ]
    same = [n for n, r in results["nets"].items() if r.get("target_ort_same_ops")]
    lines += [
        "",
        "convc is built for its default target (portable, opset 17); "
        + (
            f"`--target ort` gives the same nodes on {', '.join(same)}."
            if same
            else "`--target ort` was not compared."
        ),
    ]
    for net, r in results["nets"].items():
        if "convc_target_ort" in r:
            o = r["convc_target_ort"]
            lines.append(
                f"- {net}, convc `--target ort`: {ms(o['ort_ms'])} ms, {o['nodes']} nodes "
                f"({o['transposes']} Transposes), max abs diff {o['max_abs_diff']:.1e}"
            )
    lines += [
        "",
        "### Graphs, export time, agreement",
        "",
        "Nodes (Transposes); build or export as a whole process, launch to written .onnx "
        "(median); GFLOP/s at the median; max abs difference of the output from convc's on one "
        "random input, with the same weights.",
        "",
        "| net | model | nodes (Transposes) | build / export | GFLOP/s | max abs diff | how |",
        "|---|---|---|---|---|---|---|",
    ]
    for net, r in results["nets"].items():
        lines.append(
            f"| {net} | convc | {r['nodes']} ({r['transposes']}) | {r['build_s']:.2f} s "
            f"| {r['gflops_per_s']:.0f} | (output max {r['output_max_abs']:.2g}) "
            f"| convc build, peak {r['build_peak_mib']:.0f} MiB |"
        )
        for name in names:
            e = r["exporters"].get(name)
            if not e:
                continue
            if "error" in e:
                lines.append(f"| | {name} | — | — | — | — | failed: {e['error'][:120]} |")
                continue
            how = e["variant"]
            if e["fallbacks"]:
                how += " (after " + "; ".join(f[:60] for f in e["fallbacks"]) + ")"
            if e["input_layout"].startswith("channels_first"):
                how += "; channels-first input"
            lines.append(
                f"| | {name} | {e['nodes']} ({e['transposes']}) | {e['export_s']:.2f} s "
                f"| {e['gflops_per_s']:.0f} | {e['max_abs_diff']:.1e} | {how} |"
            )
    st = results["startup"]
    lines += [
        "",
        "### convc check",
        "",
        f"Start-up: `import convc.cli` {st['import_convc_cli_s']:.2f} s; `convc check` of a "
        f"one-layer net {st['trivial_check_s']:.2f} s. Start-up below is taken off pair by pair: "
        "each check of a net runs right after one of the one-layer net.",
        "",
        "| net | check (process) | check / ORT | (check - start-up) / ORT |",
        "|---|---|---|---|",
    ]
    for net, r in results["nets"].items():
        lines.append(
            f"| {net} | {r['check_s']:.2f} s | {r['check_over_ort']:.0f}x "
            f"| {r['check_less_startup_over_ort']:.0f}x |"
        )
    lines += ["", "### Targets of the speed issue", ""]
    if "geomean_convc_over_best" in s:
        lines.append(
            "- convc at most as slow as the best exporter on every net: "
            + ("met" if s["target_every_net_at_most_best"] else "not met")
        )
        lines.append(
            f"- geomean at least 10% faster (convc / best <= 0.90): "
            f"{s['geomean_convc_over_best']:.3f}, "
            + ("met" if s["target_geomean_at_most_0.9"] else "not met")
        )
    lines.append(
        "- convc build < 0.5 s (deep_stack2d < 1 s): " + ("met" if s["target_build"] else "not met")
    )
    if "target_fewest_nodes" in s:
        more = s["nets_with_more_nodes_than_fewest_exporter"]
        lines.append(
            "- no more nodes than the fewest of any exporter (Transposes aside), at most 2 "
            "Transposes: " + ("met" if not more else "not met (" + ", ".join(more) + ")")
        )
    if "target_build_memory" in s:
        lines.append(
            "- build peak below 3 W + 150 MB: " + ("met" if s["target_build_memory"] else "not met")
        )
    lines.append(
        "- check within 20x ORT plus start-up: "
        + ("met" if s["target_check_within_20x_ort_plus_startup"] else "not met")
    )
    for net, profiles in results["profiles"].items():
        lines += ["", f"### ORT profile: {net} (kernel time by op type, ms per run)", ""]
        models = list(profiles)
        lines.append("| op | " + " | ".join(models) + " |")
        lines.append("|---|" + "---|" * len(models))
        ops = []
        for p in profiles.values():
            ops += [o["op"] for o in p["by_op"] if o["op"] not in ops]
        for op in ops:
            cells = []
            for p in profiles.values():
                found = next((o for o in p["by_op"] if o["op"] == op), None)
                cells.append(
                    f"{found['ms_per_run']:.2f} ({found['share']:.0%}, "
                    f"{found['nodes']} node{'s' if found['nodes'] != 1 else ''})"
                    if found
                    else "—"
                )
            lines.append(f"| {op} | " + " | ".join(cells) + " |")
        lines.append(
            "| all kernels | "
            + " | ".join(f"{p['kernel_ms_per_run']:.2f}" for p in profiles.values())
            + " |"
        )
        top = profiles["convc"]["top_nodes"]
        lines.append("")
        lines.append(
            "convc's costliest nodes: "
            + "; ".join(f"{t['node']} ({t['op']}, {t['ms_per_run']:.2f} ms)" for t in top)
            + "."
        )
    lines.append("")
    for layers, r in results["scaling"].items():
        lines.append(
            f"- a {int(layers):,}-layer Conv1D stack builds in {r['build_s']:.2f} s, "
            f"peak {r['peak_mib']:.0f} MiB"
        )
    if "memory" in results:
        r = results["memory"]
        lines.append(
            f"- a net of {r['weights_mib']:.0f} MiB of weights (24 Conv2D(512, 3)) builds in "
            f"{r['build_s']:.2f} s, peak {r['peak_mib']:.0f} MiB; the bound 3 W + 150 MB is "
            f"{r['bound_mib']:.0f} MiB"
        )
    for note in results["skipped"]:
        lines.append(f"- skipped: {note}")
    if not names:
        lines.append(
            "- for reference, the speed issue quotes for the fastest exporter per net (not "
            "measured here): "
            + "; ".join(
                f"{n} {q['ms']} ms, {q['nodes']} nodes, export {q['export_s']} s"
                for n, q in ISSUE_QUOTED.items()
            )
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

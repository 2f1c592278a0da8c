"""convc's speed benchmark: the compiler and its models side by side with other exporters'.

    python benchmarks/run.py [--quick] [--nets NAME ...] [--exporters NAME ...] [--no-exporters]

Twelve nets: the eight of benchmarks/nets/ (five straight stacks and three graphs, unchanged)
and keras.applications MobileNetV2, ResNet50, EfficientNetB0 and DenseNet121 at 224x224, made
in Keras (random weights and BatchNormalization statistics, logits) and saved as .keras files
that convc builds as they are. For each it measures:

* ``convc build`` as a whole process, launch to written .onnx (median of 5), and its peak
  resident memory;
* with the exporters' virtualenvs present (``bash benchmarks/exporters/setup.sh`` makes them;
  found automatically), the same net exported by each peer as a whole process, launch to
  written .onnx (median of 3 for a .conv net, one export for an application): Keras's own
  ``model.export(format="onnx")`` on torch (keras-torch) and on TensorFlow (keras-tf), tf_keras
  with ``tf2onnx.convert.from_keras`` (tf_keras-tf2onnx), and the net written in ``torch.nn``
  (an application's torchvision twin) with ``torch.onnx.export``'s dynamo exporter
  (torch-native) and its TorchScript one (torch-native-ts); see benchmarks/exporters/README.md.
  All of them load one set of weights, and every peer's output must agree with convc's on the
  benchmark's input (``AGREEMENT``) before it is timed: one that does not, or that fails to
  export, is recorded with its error and not timed. An application's convc model is also
  compared with Keras's own output;
* each model's node count, Transposes, and latency in ONNX Runtime on the CPU, all the models
  of a net in one process: batch 1, default session options except one shared intra-op pool
  of 2 threads (per-session pools would spin against one another on 2 cores), warm-up, then
  timed runs in blocks, round-robin across the models so that drift hits all alike; median,
  p10, p90, the blocks' medians and GFLOP/s (FLOPs are 2 x multiply-adds of the convolutions);
* ``convc check`` as a whole process, its ratio to one ORT inference, and the same after
  taking off start-up: the median excess over a ``convc check`` of a one-layer net run just
  before it, pair by pair (``import convc.cli`` alone is reported too);
* an ORT profile (time by kernel type) of convc's model and the fastest peer's wherever convc
  is not clearly ahead (``PROFILE_WITHIN``);
* build time of generated stacks of 1,000 and 10,000 layers (linear scaling), and the peak
  memory of a build that is nearly all weights;
* int8 (#27; ``--no-int8`` skips it): ``convc build --precision int8`` with ``INT8_SAMPLES``
  standard-normal calibration samples (the nets' weights are random, like their input), and the
  best peer's float32 model quantized by onnxruntime's own ``quantize_static`` with the same
  samples and the same settings (QDQ, per-channel 7-bit weights, uint8 activations, min-max);
  timed in a second round-robin with convc's float32 model and that peer's, so that convc int8
  / best peer float32 and convc int8 / quantized peer come from the same blocks; beside each its
  accuracy cost on the benchmark's input (SQNR against its own float32 model).

Without the exporters' virtualenvs it measures convc alone on the .conv nets and says what it
skipped. Results go to benchmarks/results.json and benchmarks/results.md.
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
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NETS = HERE / "nets"
EXPORT_SCRIPT = HERE / "exporters" / "export.py"
APPLICATION_SCRIPT = HERE / "exporters" / "applications_export.py"

# Exporter -> the virtualenv (under benchmarks/) that runs the exporters' scripts for it, and
# the scripts' arguments (export.py for a .conv net, applications_export.py for an application).
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
APPLICATIONS = ("MobileNetV2", "ResNet50", "EfficientNetB0", "DenseNet121")
APPLICATION_SIZE = 224
THREADS = 2
AGREEMENT = 1e-4
"""A peer is timed only if its output is within AGREEMENT * max(1, max |convc's output|) of
convc's, element by element (an application's convc model also of Keras's own output)."""
INT8_SAMPLES = 16
"""Calibration samples of the int8 models (the nets' random weights call for no more)."""
PROFILE_WITHIN = 0.97
"""Nets where convc / best peer is above this get an ORT profile of convc and that peer."""

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


def run_export_script(python: Path, script: Path, args: list[str]) -> tuple[float, dict]:
    """One run of an exporters' script as a fresh process: its wall time and its JSON report
    (the last line it prints)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), str(script), *args], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise RuntimeError(" | ".join(tail) or f"exit status {done.returncode}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Net:
    """One net of the benchmark, ready to build and export: what ``convc build`` and ``convc
    check`` take, how each exporter's script is called, and the input every model is fed."""

    name: str
    kind: str  # "conv" (benchmarks/nets/NAME.conv) or "application" (keras.applications)
    source: Path
    build_extra: list[str]
    model: object  # convc's resolved Model: FLOPs, parameters
    x: object  # the input, in the source's own layout
    keras_output: object = None  # an application's output in Keras, for x
    weights: str = ""

    def export_args(self, exporter: str, out: Path) -> tuple[Path, list[str]]:
        flags = EXPORTERS[exporter][1]
        if self.kind == "application":
            return APPLICATION_SCRIPT, ["export", str(self.source), str(out), *flags]
        return EXPORT_SCRIPT, [str(self.source), str(out), *flags, *self.build_extra]


def conv_net(path: Path, scratch: Path, python: Path | None) -> Net:
    """A reference net: random weights drawn once by the exporters' script (a Keras
    .weights.h5 every model loads), or convc's own initializers without the exporters."""
    import numpy as np

    from convc.compiler import resolve_text

    model = resolve_text(path.read_text())
    extra, how = [], "convc's initializers, seed 0"
    if python is not None:
        weights = scratch / f"{path.stem}.weights.h5"
        run_export_script(python, EXPORT_SCRIPT, [str(path), "--save-weights", str(weights)])
        extra, how = ["--weights", str(weights)], "random, drawn by exporters/export.py, shared"
    shape = [d if d is not None else 1 for d in model.input.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return Net(path.stem, "conv", path, extra, model, x, weights=how)


def application(name: str, scratch: Path, python: Path) -> Net:
    """A keras.applications net at 224x224, made by the exporters' script in Keras (random
    weights and BatchNormalization statistics, logits): its .keras file, an input and
    Keras's output for it."""
    import numpy as np

    from convc.compiler import load_source

    run_export_script(
        python, APPLICATION_SCRIPT, ["make", name, str(APPLICATION_SIZE), str(scratch)]
    )
    source = scratch / f"{name}.keras"
    data = np.load(scratch / f"{name}.npz")
    model = load_source(source).model
    how = "random (BatchNormalization statistics too), made in Keras, from the .keras file"
    return Net(name, "application", source, [], model, data["x"], data["y"], weights=how)


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


def ort_outputs(models: dict[str, tuple[Path, str]], x) -> dict[str, object]:
    """Each model's (first) output for ``x``."""
    outputs = {}
    for name, (path, layout) in models.items():
        s = session(path)
        spec = s.get_inputs()[0]
        outputs[name] = s.run(None, {spec.name: feed_for(spec.shape, x, layout)})[0]
    return outputs


def ort_latency(
    models: dict[str, tuple[Path, str]], x, runs: int, warmup: int, blocks: int
) -> dict[str, list[float]]:
    """Latency samples (ms) of each model, timed in blocks round-robin across the models."""
    sessions = {}
    for name, (path, layout) in models.items():
        s = session(path)
        spec = s.get_inputs()[0]
        sessions[name] = (s, {spec.name: feed_for(spec.shape, x, layout)})
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
    return samples


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


def cpu_description() -> str:
    """The CPU's model and whether it has int8 dot-product instructions: onnxruntime's int8
    kernels gain far more with AVX-512 VNNI or AVX-VNNI than with AVX2 alone, so an int8 figure
    holds for the kind of CPU it was measured on."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if key.strip() == "flags":
                break  # the first CPU's fields are all there is to know
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields:
        model += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    flags = set(fields.get("flags", "").split())
    extensions = [f for f in ("avx512_vnni", "avx_vnni", "avx512f", "avx2") if f in flags]
    return f"{model}; {' '.join(extensions) or 'no AVX2'}"


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "?"


@dataclass(frozen=True)
class Protocol:
    repeats: int  # convc builds and checks timed per net
    export_repeats: int  # exports timed per .conv net (an application's: once, they take minutes)
    runs: int
    warmup: int
    blocks: int
    wait_quiet: float


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument(
        "--nets", nargs="*", default=None, help="only these nets (.conv stems or applications)"
    )
    parser.add_argument(
        "--exporters", nargs="*", choices=list(EXPORTERS), default=None, help="only these"
    )
    parser.add_argument("--no-exporters", action="store_true", help="measure convc alone")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 models")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=600,
        metavar="S",
        help="before each net, wait up to S seconds for other processes to leave the CPUs",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import onnx

    set_thread_pool()
    if args.quick:
        protocol = Protocol(2, 1, 20, 3, 4, args.wait_quiet)
    else:
        protocol = Protocol(5, 3, 200, 20, 25, args.wait_quiet)
    names = [n.stem for n in sorted(NETS.glob("*.conv"))] + list(APPLICATIONS)
    if args.nets:
        names = [n for n in names if n in args.nets]
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
    maker = exporter_python("keras-torch")  # Keras on torch draws weights and makes models
    versions: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        start_s = startup_s(protocol.repeats)
        trivial = scratch / "trivial.conv"
        trivial.write_text("Input(shape=(8, 1))\nConv1D(1, 1)\n")
        trivial_check_s, _ = timed_process(["check", str(trivial)], protocol.repeats)
        results["startup"] = {
            "import_convc_cli_s": round(start_s, 3),
            "trivial_check_s": round(trivial_check_s, 3),
        }
        for name in names:
            if name in APPLICATIONS and maker is None:
                results["skipped"].append(
                    f"{name}: made in Keras, which needs benchmarks/.venv-exporters"
                )
                continue
            waited = wait_for_quiet(protocol.wait_quiet)
            phase = (cpu_seconds(), time.perf_counter())
            if name in APPLICATIONS:
                net = application(name, scratch, maker)
            else:
                net = conv_net(NETS / f"{name}.conv", scratch, maker if exporters else None)
            entry = measure(
                net, exporters, protocol, scratch, versions, trivial, int8=not args.no_int8
            )
            entry["other_load_cores"]["waited_s"] = round(waited, 1)
            entry["other_load_cores"]["exports"] = round(
                foreign_load(phase[0], time.perf_counter() - phase[1]), 2
            )
            results["nets"][name] = entry
            profiled = entry.pop("_profiled", None)
            if profiled:
                results["profiles"][name] = profiled
            line = ", ".join(
                f"{n} {e['ort_ms']['median']:.2f} ms"
                for n, e in entry["exporters"].items()
                if "ort_ms" in e
            )
            print(
                f"{name}: build {entry['build_s']:.2f} s, {entry['nodes']} nodes, "
                f"ORT {entry['ort_ms']['median']:.2f} ms" + (f"; {line}" if line else ""),
                flush=True,
            )
            for path in scratch.glob(f"{name}.*"):
                path.unlink()
        measure_scaling(results, scratch)
    results["summary"] = summary(results)
    import onnxruntime

    results["machine"] = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_description(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "convc_commit": git_commit(),
        "exporter_versions": versions,
        "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
        "protocol": (
            f"batch 1, CPU, one shared intra-op pool of {THREADS} threads; {protocol.warmup} "
            f"warm-up runs each, then {protocol.runs} timed runs each in {protocol.blocks} "
            "blocks, round-robin across the models of a net (order reversed every other block)"
        ),
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (HERE / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def measure(
    net: Net,
    exporters: dict[str, Path],
    protocol: Protocol,
    scratch: Path,
    versions: dict[str, dict],
    trivial: Path,
    *,
    int8: bool = True,
) -> dict:
    """Build, export, check agreement, time and check one net: its entry of results.json."""
    import numpy as np

    work = gflop(net.model)
    entry: dict = {"kind": net.kind, "gflop": round(work, 3), "exporters": {}}
    entry["weights"] = net.weights
    out = scratch / f"{net.name}.convc.onnx"
    build = ["build", str(net.source), "-o", str(out), *net.build_extra]
    build_s, build_kib = timed_process(build, protocol.repeats)
    nodes, transposes = graph_counts(out)
    entry.update(
        build_s=round(build_s, 3),
        build_peak_mib=round(build_kib / 1024, 1),
        weights_mib=round(net.model.parameter_count * 4 / 2**20, 2),
        nodes=nodes,
        transposes=transposes,
    )
    models = {"convc": (out, "as the .conv")}
    # convc's default target is portable; --target ort is the graph made for this very
    # runtime. Where the two differ in their nodes, the ort build is timed too.
    ort_out = scratch / f"{net.name}.convc-ort.onnx"
    timed_process([*build[:3], str(ort_out), *build[4:], "--target", "ort"], 1)
    entry["target"] = "default (portable)"
    entry["target_ort_same_ops"] = op_types(ort_out) == op_types(out)
    if not entry["target_ort_same_ops"]:
        models["convc-ort"] = (ort_out, "as the .conv")
    repeats = protocol.export_repeats if net.kind == "conv" else 1
    for name, python in exporters.items():
        path = scratch / f"{net.name}.{name}.onnx"
        script, export_args = net.export_args(name, path)
        try:
            walls, report = [], {}
            for _ in range(repeats):
                wall, report = run_export_script(python, script, export_args)
                walls.append(wall)
        except RuntimeError as error:
            entry["exporters"][name] = {"error": str(error)}
            print(f"{net.name}: {name} failed: {error}", flush=True)
            continue
        versions[name] = report.get("versions", {})
        nodes, transposes = graph_counts(path)
        entry["exporters"][name] = {
            "variant": report.get("variant"),
            "fallbacks": report.get("failures", []),
            "input_layout": report.get("input_layout"),
            "export_s": round(statistics.median(walls), 3),
            "export_call_s": report.get("export_s"),
            "exports_timed": len(walls),
            "nodes": nodes,
            "transposes": transposes,
        }
        models[name] = (path, report.get("input_layout", ""))

    # Agreement first: a model whose output differs from convc's is recorded, not timed.
    outputs = ort_outputs(models, net.x)
    reference = outputs["convc"]
    entry["output_max_abs"] = float(np.abs(reference).max())
    bound = AGREEMENT * max(1.0, entry["output_max_abs"])
    entry["agreement_bound"] = bound
    if net.keras_output is not None:
        error = float(np.abs(reference - net.keras_output).max())
        entry["convc_max_abs_diff_from_keras"] = error
        entry["convc_agrees_with_keras"] = error <= bound
    for name, (_, layout) in list(models.items()):
        if name == "convc":
            continue
        got = outputs[name]
        if layout.startswith("channels_first") and got.ndim > 2:
            got = np.moveaxis(got, 1, -1)
        diff = float(np.abs(got - reference).max()) if got.shape == reference.shape else None
        e = entry.setdefault("convc_target_ort", {}) if name == "convc-ort" else None
        e = e if e is not None else entry["exporters"][name]
        e["max_abs_diff"] = diff
        if diff is None or diff > bound:
            e["error"] = (
                f"output disagrees with convc's (max abs difference {diff}, bound {bound:.2g}): "
                "not timed"
            )
            del models[name]

    wait_for_quiet(protocol.wait_quiet)
    phase = (cpu_seconds(), time.perf_counter())
    samples = ort_latency(models, net.x, protocol.runs, protocol.warmup, protocol.blocks)
    entry["other_load_cores"] = {
        "ort": round(foreign_load(phase[0], time.perf_counter() - phase[1]), 2)
    }
    entry["ort_ms"], entry["gflops_per_s"] = latency_summary(
        samples["convc"], work, protocol.blocks
    )
    for name in models:
        if name == "convc":
            continue
        e = entry["convc_target_ort"] if name == "convc-ort" else entry["exporters"][name]
        if name == "convc-ort":
            e["nodes"], e["transposes"] = graph_counts(models[name][0])
        e["ort_ms"], e["gflops_per_s"] = latency_summary(samples[name], work, protocol.blocks)
    timed = {n: e["ort_ms"]["median"] for n, e in entry["exporters"].items() if "ort_ms" in e}
    if timed:
        best = min(timed, key=timed.get)
        entry["best_exporter"] = best
        # The ratio block by block (the models of a block ran back to back), and its median:
        # this VM has slow phases of seconds (DenseNet121 swings between 30 and 50 ms for every
        # model alike), which a ratio of run-wide medians mistakes for a difference of models.
        pairs = zip(
            entry["ort_ms"]["block_medians"],
            entry["exporters"][best]["ort_ms"]["block_medians"],
            strict=True,
        )
        per_block = sorted(a / b for a, b in pairs)
        entry["convc_over_best"] = round(statistics.median(per_block), 3)
        entry["convc_over_best_of_medians"] = round(entry["ort_ms"]["median"] / timed[best], 3)
        entry["convc_over_best_blocks"] = [round(per_block[0], 3), round(per_block[-1], 3)]
        if entry["convc_over_best"] > PROFILE_WITHIN:
            runs = protocol.runs // 4
            profiles = {
                label: ort_profile(path, net.x, layout, runs, protocol.warmup, scratch)
                for label, (path, layout) in (("convc", models["convc"]), (best, models[best]))
            }
            entry["_profiled"] = profiles
            # The sum of the kernels' own times, free of the scheduling noise between them.
            entry["convc_over_best_kernel_time"] = round(
                profiles["convc"]["kernel_ms_per_run"] / profiles[best]["kernel_ms_per_run"], 3
            )
    if int8:
        entry["int8"] = measure_int8(net, entry, models, protocol, scratch)
    check_s, beyond_startup_s = paired_check_s(net.source, trivial, protocol.repeats + 2)
    ort_s = entry["ort_ms"]["median"] / 1000
    entry.update(
        check_s=round(check_s, 3),
        check_beyond_startup_s=round(beyond_startup_s, 3),
        check_over_ort=round(check_s / ort_s, 1),
        check_less_startup_over_ort=round(beyond_startup_s / ort_s, 1),
    )
    return entry


def measure_int8(
    net: Net, entry: dict, models: dict[str, tuple[Path, str]], protocol: Protocol, scratch: Path
) -> dict:
    """convc's int8 model and the best peer's model quantized by onnxruntime, timed beside
    convc's float32 model and that peer's (see the module's docstring)."""
    import numpy as np

    rng = np.random.default_rng(27)
    samples = rng.standard_normal((INT8_SAMPLES, *net.x.shape[1:])).astype(np.float32)
    calibration = scratch / f"{net.name}.calibration.npy"
    np.save(calibration, samples)
    out = scratch / f"{net.name}.convc-int8.onnx"
    build = ["build", str(net.source), "-o", str(out), *net.build_extra]
    build += ["--precision", "int8", "--calibration", str(calibration)]
    build += ["--calibration-count", str(INT8_SAMPLES)]
    build_s, build_kib = timed_process(build, 1)
    result: dict = {"build_s": round(build_s, 3), "build_peak_mib": round(build_kib / 1024, 1)}
    result["nodes"], result["transposes"] = graph_counts(out)
    timed = {"convc": models["convc"], "convc-int8": (out, "as the .conv")}
    best = entry.get("best_exporter")
    if best is not None:
        peer = scratch / f"{net.name}.{best}-int8.onnx"
        try:
            quantize_peer(models[best], samples, peer)
        except Exception as error:  # the peer's graph is the peer's: record, do not stop
            result["peer_error"] = f"quantize_static failed on {best}'s model: {error}"
        else:
            timed[best] = models[best]
            timed["peer-int8"] = (peer, models[best][1])
            result["peer"] = best
            result["peer_nodes"], result["peer_transposes"] = graph_counts(peer)
    outputs = ort_outputs(timed, net.x)
    result["sqnr_db"] = sqnr(outputs["convc"], outputs["convc-int8"])
    if "peer-int8" in outputs:
        result["peer_sqnr_db"] = sqnr(outputs[best], outputs["peer-int8"])
    samples_ms = ort_latency(timed, net.x, protocol.runs, protocol.warmup, protocol.blocks)
    work = entry["gflop"]
    for name, key in (("convc", "float32"), ("convc-int8", "int8"), (best, "peer_float32")):
        if name in samples_ms:
            result[f"{key}_ms"], _ = latency_summary(samples_ms[name], work, protocol.blocks)
    if "peer-int8" in samples_ms:
        result["peer_int8_ms"], _ = latency_summary(samples_ms["peer-int8"], work, protocol.blocks)

    def ratio(a: str, b: str) -> float:
        pairs = zip(result[a]["block_medians"], result[b]["block_medians"], strict=True)
        return round(statistics.median(x / y for x, y in pairs), 3)

    result["int8_over_float32"] = ratio("int8_ms", "float32_ms")
    if "peer_int8_ms" in result:
        result["int8_over_best_float32"] = ratio("int8_ms", "peer_float32_ms")
        result["int8_over_peer_int8"] = ratio("int8_ms", "peer_int8_ms")
    print(
        f"{net.name}: int8 {result['int8_ms']['median']:.2f} ms "
        f"({result['int8_over_float32']:.2f} of float32, SQNR {result['sqnr_db']:.1f} dB)"
        + (
            f"; {best} int8 {result['peer_int8_ms']['median']:.2f} ms"
            if "peer_int8_ms" in result
            else ""
        ),
        flush=True,
    )
    return result


def quantize_peer(model: tuple[Path, str], samples, out: Path) -> None:
    """``quantize_in_process`` in a process of its own: onnxruntime's calibration opens sessions
    with their own thread pools, which this process's global pool (``set_thread_pool``) makes
    onnxruntime refuse ("use_per_session_threads must be false when using a global thread
    pool")."""
    import numpy as np

    data = out.with_suffix(".samples.npy")
    np.save(data, samples)
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import run; "
        "import numpy; run.quantize_in_process((Path(sys.argv[2]), sys.argv[3]), "
        "numpy.load(sys.argv[4]), Path(sys.argv[5]))"
    )
    path, layout = model
    arguments = [str(HERE), str(path), layout, str(data), str(out)]
    done = subprocess.run(
        [sys.executable, "-c", code, *arguments], capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")


def quantize_in_process(model: tuple[Path, str], samples, out: Path) -> None:
    """A peer's float32 model quantized by onnxruntime's ``quantize_static`` as convc quantizes
    its own: QDQ, per-channel 7-bit int8 weights, uint8 activations, min-max on ``samples``
    (fed in the peer's layout)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    path, layout = model
    graph_input = onnx.load(str(path), load_external_data=False).graph.input[0]
    shape = [
        d.dim_value if d.HasField("dim_value") else None
        for d in graph_input.type.tensor_type.shape.dim
    ]
    feeds = [{graph_input.name: feed_for(shape, sample[None], layout)} for sample in samples]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(
        str(path),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}},
    )


def sqnr(reference, quantized) -> float:
    """``10 log10(sum f^2 / sum (q - f)^2)``, in dB."""
    import numpy as np

    f = np.asarray(reference, np.float64)
    noise = float(((np.asarray(quantized, np.float64) - f) ** 2).sum())
    return round(10 * math.log10(float((f**2).sum()) / noise), 2) if noise else float("inf")


def measure_scaling(results: dict, scratch: Path) -> None:
    """Build time of long generated stacks (linear scaling) and the peak memory of a build
    that is nearly all weights."""
    for layers in (1_000, 10_000):
        source = scratch / f"stack{layers}.conv"
        source.write_text(stack_text(layers))
        build_s, build_kib = timed_process(["build", str(source), "-o", str(scratch / "s.onnx")], 1)
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
        "bound_mib": round(3 * weights_mib, 1),
    }
    print(f"weight-heavy net: {results['memory']}", flush=True)


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
    out["target_build_conv_nets_under_0.5_s"] = all(
        r["build_s"] < 0.5 for r in nets.values() if r["kind"] == "conv"
    )
    if "ResNet50" in nets:
        r = nets["ResNet50"]
        out["resnet50_build"] = {
            "build_s": r["build_s"],
            "peak_mib": r["build_peak_mib"],
            "weights_mib": r["weights_mib"],
            "peak_over_weights": round(r["build_peak_mib"] / r["weights_mib"], 2),
        }
        out["target_resnet50_build_under_2_s_and_3x_weights"] = (
            r["build_s"] < 2 and r["build_peak_mib"] < 3 * r["weights_mib"]
        )
    # Compared without Transposes: the torch-native models take channels-first input, where
    # convc's and Keras's take channels-last (each format's models carry its boundary ones).
    # A peer that disagrees with convc computes another function: its nodes set no bar.
    agreeing = {
        n: [e for e in r["exporters"].values() if "nodes" in e and "error" not in e]
        for n, r in nets.items()
    }
    fewest = {
        n: min(e["nodes"] - e["transposes"] for e in peers)
        for n, peers in agreeing.items()
        if peers
    }
    if fewest:
        out["fewest_peer_nodes_without_transposes"] = fewest
        out["nets_with_more_nodes_than_fewest_peer"] = sorted(
            n for n, least in fewest.items() if nets[n]["nodes"] - nets[n]["transposes"] > least
        )
        out["target_fewest_nodes"] = not out["nets_with_more_nodes_than_fewest_peer"]
    if "memory" in results:
        memory = results["memory"]
        out["target_build_memory"] = memory["peak_mib"] < memory["bound_mib"]
    int8 = {n: r["int8"] for n, r in nets.items() if "int8" in r}
    if int8:
        out["int8_over_float32"] = {n: r["int8_over_float32"] for n, r in int8.items()}
        versus = {n: r["int8_over_best_float32"] for n, r in int8.items() if "peer" in r}
        if versus:
            out["geomean_int8_over_best_float32"] = round(geomean(list(versus.values())), 3)
            out["target_int8_geomean_at_most_0.5"] = out["geomean_int8_over_best_float32"] <= 0.5
            peers = {n: r["int8_over_peer_int8"] for n, r in int8.items() if "peer" in r}
            out["nets_int8_slower_than_quantized_peer"] = sorted(
                n for n, v in peers.items() if v > 1
            )
            out["target_int8_at_most_quantized_peer"] = not out[
                "nets_int8_slower_than_quantized_peer"
            ]
    over = {n: r["check_less_startup_over_ort"] for n, r in nets.items()}
    out["nets_check_over_20_inferences"] = sorted(n for n, v in over.items() if v > 20)
    out["target_check_within_20_inferences"] = not out["nets_check_over_20_inferences"]
    return out


def ms(o: dict) -> str:
    return f"{o['median']:.2f} [{o['p10']:.2f}, {o['p90']:.2f}]"


def markdown(results: dict) -> str:
    # The .conv nets by name, then the applications in the issue's order (results.json sorts
    # its keys).
    ordered = sorted(
        results["nets"],
        key=lambda n: (n in APPLICATIONS, APPLICATIONS.index(n) if n in APPLICATIONS else n),
    )
    results = {**results, "nets": {n: results["nets"][n] for n in ordered}}
    m = results["machine"]
    present = {e for r in results["nets"].values() for e in r["exporters"]}
    names = [name for name in EXPORTERS if name in present]
    lines = [
        f"Measured {m['date']} with `{m['command']}` (convc {m['convc_commit']}): "
        f"{m['cpu_count']} cores ({m.get('cpu', m['processor'])}), Python {m['python']}, "
        "onnxruntime "
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
        "| net | GFLOP | convc | "
        + " | ".join(names)
        + " | convc / best: median of blocks [range] | other load |",
        "|---|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for net, r in results["nets"].items():
        cells = []
        for name in names:
            e = r["exporters"].get(name, {})
            cells.append(
                ms(e["ort_ms"])
                if "ort_ms" in e
                else "disagrees"
                if "max_abs_diff" in e
                else "failed"
                if e
                else "—"
            )
        ratio = "—"
        if "best_exporter" in r:
            low, high = r["convc_over_best_blocks"]
            ratio = f"{r['convc_over_best']:.3f} [{low:.2f}, {high:.2f}] ({r['best_exporter']})"
            if "convc_over_best_kernel_time" in r:
                ratio += f"; kernels {r['convc_over_best_kernel_time']:.3f}"
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
        if "convc_target_ort" in r and "ort_ms" in r["convc_target_ort"]:
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
        against_keras = ""
        if "convc_max_abs_diff_from_keras" in r:
            against_keras = f"; {r['convc_max_abs_diff_from_keras']:.1e} from Keras's output"
        lines.append(
            f"| {net} | convc | {r['nodes']} ({r['transposes']}) | {r['build_s']:.2f} s "
            f"| {r['gflops_per_s']:.0f} | (output max {r['output_max_abs']:.2g}{against_keras}) "
            f"| convc build, peak {r['build_peak_mib']:.0f} MiB |"
        )
        for name in names:
            e = r["exporters"].get(name)
            if not e:
                continue
            if "error" in e and "nodes" not in e:
                lines.append(f"| | {name} | — | — | — | — | failed: {e['error'][:160]} |")
                continue
            if "error" in e:
                lines.append(
                    f"| | {name} | {e['nodes']} ({e['transposes']}) | {e['export_s']:.2f} s | — "
                    f"| {e['max_abs_diff']} | {e['error']} |"
                )
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
    lines += targets(s)
    lines += [
        "",
        "What limits each target that is not met, with the forms measured and not taken, is "
        "in docs/performance.md; the profiles below show where the time goes.",
    ]
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
    lines += int8_lines(results)
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
            f"{r['build_s']:.2f} s, peak {r['peak_mib']:.0f} MiB (3 W is {r['bound_mib']:.0f} MiB)"
        )
    for note in results["skipped"]:
        lines.append(f"- skipped: {note}")
    return "\n".join(lines) + "\n"


def int8_lines(results: dict) -> list[str]:
    """The int8 table of results.md (#27)."""
    rows = {n: r["int8"] for n, r in results["nets"].items() if "int8" in r}
    if not rows:
        return []
    lines = [
        "",
        "### int8",
        "",
        f"`convc build --precision int8` ({INT8_SAMPLES} standard-normal calibration samples, "
        "7-bit per-channel weights), and the best peer's model quantized by onnxruntime's "
        "`quantize_static` alike, timed in one round-robin with both float32 models; ratios are "
        "medians of per-block ratios; SQNR against the model's own float32 output.",
        "",
        "| net | convc float32 ms | convc int8 ms | int8 / float32 | best peer float32 ms "
        "| convc int8 / best peer float32 | quantized peer ms | convc int8 / quantized peer "
        "| SQNR convc / peer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        peer = r.get("peer")
        lines.append(
            f"| {name} | {ms(r['float32_ms'])} | {ms(r['int8_ms'])} | "
            f"{r['int8_over_float32']:.2f} | "
            + (
                f"{ms(r['peer_float32_ms'])} ({peer}) | {r['int8_over_best_float32']:.2f} | "
                f"{ms(r['peer_int8_ms'])} | {r['int8_over_peer_int8']:.2f} | "
                f"{r['sqnr_db']:.1f} / {r['peer_sqnr_db']:.1f} dB |"
                if "peer_int8_ms" in r
                else f"- | - | - | - | {r['sqnr_db']:.1f} dB / - |"
            )
        )
    s = results.get("summary", {})
    if "geomean_int8_over_best_float32" in s:
        lines.append("")
        lines.append(
            f"- geometric mean of convc int8 / best peer float32 at most 0.5: "
            f"{s['geomean_int8_over_best_float32']:.3f}, "
            + ("met" if s["target_int8_geomean_at_most_0.5"] else "not met")
        )
        slower = s["nets_int8_slower_than_quantized_peer"]
        lines.append(
            "- convc int8 at most 1.0 of the quantized peer on every net: "
            + ("met" if not slower else "not met (" + ", ".join(slower) + ")")
        )
    return lines


def targets(s: dict) -> list[str]:
    """The targets' lines of results.md."""

    def verdict(met: bool) -> str:
        return "met" if met else "not met"

    lines = []
    if "geomean_convc_over_best" in s:
        slower = ", ".join(s["nets_slower_than_best"]) or "none"
        lines.append(
            "- convc / best peer at most 1.0 on every net: "
            + verdict(s["target_every_net_at_most_best"])
            + f" (slower: {slower}; within the blocks' noise: "
            + (", ".join(s["nets_within_noise"]) or "none")
            + ")"
        )
        lines.append(
            f"- geometric mean of convc / best peer at most 0.90: "
            f"{s['geomean_convc_over_best']:.3f}, {verdict(s['target_geomean_at_most_0.9'])}"
        )
    lines.append(
        "- each .conv net builds in under 0.5 s (whole process): "
        + verdict(s["target_build_conv_nets_under_0.5_s"])
    )
    if "resnet50_build" in s:
        r = s["resnet50_build"]
        lines.append(
            f"- ResNet50 from .keras in under 2 s and 3x its weights: {r['build_s']:.2f} s, "
            f"peak {r['peak_mib']:.0f} MiB = {r['peak_over_weights']:.2f}x its "
            f"{r['weights_mib']:.0f} MiB, "
            + verdict(s["target_resnet50_build_under_2_s_and_3x_weights"])
        )
    if "target_fewest_nodes" in s:
        more = s["nets_with_more_nodes_than_fewest_peer"]
        lines.append(
            "- no more nodes than the leanest peer (Transposes aside): "
            + ("met" if not more else "not met (" + ", ".join(more) + ")")
        )
    if "target_build_memory" in s:
        lines.append(
            "- the weight-heavy net builds under 3x its weights: "
            + verdict(s["target_build_memory"])
        )
    over = s["nets_check_over_20_inferences"]
    lines.append(
        "- `convc check` (less start-up) within 20 ORT inferences: "
        + ("met" if not over else "not met (" + ", ".join(over) + ")")
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())

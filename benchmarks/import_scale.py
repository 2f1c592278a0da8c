"""How long convc takes to import very long models (#23: "a 100,000-layer model imports in
seconds").

    python benchmarks/import_scale.py [--layers N ...] [--runs K] [--commands summary import build]

Writes Keras 3 ``.keras`` files as Keras lays them out (stored, not deflated) into a scratch
folder, then times ``python -m convc COMMAND FILE`` on each as a user runs it, a whole process
from launch to exit:

* ``sequential-relu-N``: a Sequential of N ReLU layers (no weights: the config alone);
* ``functional-relu-N``: the same as a functional chain, each layer called on the last;
* ``sequential-dense-N``: a Sequential of N Dense(4) layers with their weights, 2 datasets a
  layer in ``model.weights.h5`` (the HDF5 reader's share).

For each file and command: the median wall time of K runs, the CPU time (user + system) and the
peak resident memory of the same run, as ``wait4`` reports them. Results go to
benchmarks/import_scale.json and benchmarks/import_scale.md; the machine and the commit are
recorded beside them. The machine's speed drifts, so compare versions run alternately on one
machine, not across result files.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

POLICY = {
    "module": "keras",
    "class_name": "DTypePolicy",
    "config": {"name": "float32"},
    "registered_name": None,
}
WIDTH = 4


def _input_layer() -> dict:
    return {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": [None, WIDTH], "dtype": "float32", "name": "x"},
        "registered_name": None,
    }


def _layer(class_name: str, config: dict, inbound: str | None = None) -> dict:
    layer = {
        "module": "keras.layers",
        "class_name": class_name,
        "config": {"trainable": True, "dtype": POLICY, **config},
        "registered_name": None,
        "build_config": {"input_shape": [None, WIDTH]},
    }
    if inbound is not None:
        layer["name"] = config["name"]
        layer["inbound_nodes"] = [
            {
                "args": [
                    {
                        "class_name": "__keras_tensor__",
                        "config": {
                            "shape": [None, WIDTH],
                            "dtype": "float32",
                            "keras_history": [inbound, 0, 0],
                        },
                    }
                ],
                "kwargs": {},
            }
        ]
    return layer


def _dense(name: str) -> dict:
    initializer = {"module": "keras.initializers", "registered_name": None}
    return _layer(
        "Dense",
        {
            "name": name,
            "units": WIDTH,
            "activation": "linear",
            "use_bias": True,
            "kernel_initializer": {**initializer, "class_name": "GlorotUniform", "config": {}},
            "bias_initializer": {**initializer, "class_name": "Zeros", "config": {}},
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        },
    )


def _sequential(name: str, layers: list[dict]) -> dict:
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": name, "trainable": True, "layers": [_input_layer(), *layers]},
        "registered_name": None,
    }


def _functional_chain(layers: int) -> dict:
    entries = [{**_input_layer(), "name": "x", "inbound_nodes": []}]
    previous = "x"
    for index in range(layers):
        entries.append(_layer("ReLU", {"name": f"r{index}"}, inbound=previous))
        previous = f"r{index}"
    return {
        "module": "keras",
        "class_name": "Functional",
        "config": {
            "name": "chain",
            "trainable": True,
            "layers": entries,
            "input_layers": [["x", 0, 0]],
            "output_layers": [[previous, 0, 0]],
        },
        "registered_name": None,
    }


def _weights(dense_layers: int) -> bytes:
    """model.weights.h5 as Keras 3 writes it: ``layers/<key>/vars/0`` and ``1`` per layer."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        for index in range(dense_layers):
            key = "dense" if index == 0 else f"dense_{index}"
            group = handle.create_group(f"layers/{key}/vars")
            group.create_dataset("0", data=rng.standard_normal((WIDTH, WIDTH), np.float32) / 2)
            group.create_dataset("1", data=rng.standard_normal(WIDTH, np.float32))
        handle.create_group("vars")
    return buffer.getvalue()


def write_model(path: Path, kind: str, layers: int) -> Path:
    if kind == "sequential-relu":
        config = _sequential("long", [_layer("ReLU", {"name": f"r{i}"}) for i in range(layers)])
        weights = _weights(0)
    elif kind == "functional-relu":
        config, weights = _functional_chain(layers), _weights(0)
    else:
        config = _sequential("dense_stack", [_dense(f"d{i}") for i in range(layers)])
        weights = _weights(layers)
    metadata = {"keras_version": "3.10.0", "date_saved": "2026-01-01@00:00:00"}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("metadata.json", json.dumps(metadata))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", weights)
    return path


_MEASURE = """
import json, os, subprocess, sys, time
start = time.perf_counter()
process = subprocess.Popen([sys.executable, "-m", "convc", *sys.argv[1:]],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
error = process.stderr.read()
_, status, usage = os.wait4(process.pid, 0)
print(json.dumps({
    "code": os.waitstatus_to_exitcode(status),
    "wall_s": time.perf_counter() - start,
    "cpu_s": usage.ru_utime + usage.ru_stime,
    "peak_mb": usage.ru_maxrss / 1024,
    "error": error.decode(errors="replace")[-2000:],
}))
"""
"""Runs ``python -m convc ARGV`` and reports its wall and CPU time and its peak resident size
(``wait4``, which covers the HDF5 reader it waits for). A process's peak counts what it shared
with its parent when it was forked, so convc is started by this small process, not by the
benchmark's (which holds the configs it wrote)."""


def run_once(argv: list[str], cwd: Path) -> dict:
    """One whole ``python -m convc`` process: wall seconds, CPU seconds, peak resident MB."""
    ran = subprocess.run(
        [sys.executable, "-c", _MEASURE, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    measured = json.loads(ran.stdout)
    if measured["code"] != 0:
        raise SystemExit(
            f"convc {' '.join(argv)} failed (exit {measured['code']}):\n{measured['error']}"
        )
    return measured


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--dense-layers", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--commands", nargs="+", default=["summary", "import", "build"])
    options = parser.parse_args()

    plan = [("sequential-relu", n) for n in options.layers]
    plan += [("functional-relu", n) for n in options.layers]
    plan += [("sequential-dense", n) for n in options.dense_layers]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for kind, layers in plan:
            path = write_model(folder / f"{kind}-{layers}.keras", kind, layers)
            for command in options.commands:
                argv = [command, str(path)]
                if command in ("import", "build"):
                    suffix = ".conv" if command == "import" else ".onnx"
                    argv += ["-o", str(folder / f"out{suffix}")]
                runs = [run_once(argv, folder) for _ in range(options.runs)]
                median = sorted(runs, key=lambda run: run["wall_s"])[len(runs) // 2]
                row = {
                    "model": f"{kind}-{layers}",
                    "layers": layers,
                    "file_bytes": path.stat().st_size,
                    "command": command,
                    "runs": len(runs),
                    "wall_s": round(median["wall_s"], 2),
                    "wall_s_all": [round(run["wall_s"], 2) for run in runs],
                    "cpu_s": round(median["cpu_s"], 2),
                    "peak_mb": round(median["peak_mb"]),
                }
                rows.append(row)
                print(
                    f"{row['model']:>24} {command:>8}  {row['wall_s']:6.2f} s wall  "
                    f"{row['cpu_s']:6.2f} s CPU  {row['peak_mb']:5d} MB",
                    flush=True,
                )
    results = {
        "commit": _commit(),
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        },
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    (HERE / "import_scale.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "# Importing very long models",
        "",
        f"`python benchmarks/import_scale.py`, commit {results['commit']}, "
        f"{results['date']}, Python {results['machine']['python']}, "
        f"{results['machine']['cores']} cores. Whole `python -m convc COMMAND FILE` processes; "
        f"the median wall time of {options.runs} runs, and that run's CPU time and peak memory.",
        "",
        "| model | layers | file | command | wall | CPU | peak memory |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model'].rsplit('-', 1)[0]} | {row['layers']:,} | "
            f"{row['file_bytes'] / 1e6:.1f} MB | {row['command']} | {row['wall_s']:.2f} s | "
            f"{row['cpu_s']:.2f} s | {row['peak_mb']:,} MB |"
        )
    (HERE / "import_scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""The GPU tier's settings and bookkeeping (tests/test_gpu.py, scripts/gpu-check.sh).

A *lane* is an execution provider and the target the model is built for: by default
``cuda:portable`` (the default model on the CUDA provider) and ``tensorrt:tensorrt`` (the
``tensorrt`` target's model on the TensorRT provider). ``CONVC_GPU_LANES`` changes them; the
CPU dry run (``CONVC_GPU_DRY_RUN=1``, what ``scripts/gpu-check.sh --dry-run`` sets) runs the same
tests on ``cpu:portable,cpu:tensorrt``: everything but the GPU providers.

Tolerances, each lane against the NumPy reference (``|got - want| <= atol + rtol * |want|``):

* ``cpu``, ``cuda``, ``tensorrt``: rtol = atol = 1e-4, the CPU's. convc asks both GPU providers
  for float32 (``convc.runtime.PROVIDER_OPTIONS``: CUDA ``use_tf32=0``; TensorRT
  ``trt_fp16_enable=False``, ``trt_int8_enable=False`` and ``NVIDIA_TF32_OVERRIDE=0`` while the
  engine is built), so every kernel computes in float32 and differs from the CPU only in the
  order of its sums and its algorithm (cuDNN's or TensorRT's Winograd and FFT convolutions):
  a few float32 units in the last place (1.2e-7 each) times the square root of the reduction
  length, below 1e-5 for the matrix's models. With TF32 left on, a convolution's inputs keep 10
  bits (about 1e-3 relative): the tier would fail, which is what it is there to catch.
* float16 models: ``convc.precision.FLOAT16_RTOL``/``FLOAT16_ATOL`` (1e-2) on every lane.

The tier reads its cases from tests/gpu_cases.json, the runtime matrix's cells
(``matrix.all_cells()``) written out by ``python tests/gpu_tier.py``, so that a GPU machine
needs neither Keras nor torch (the case tables import Keras); tests/test_gpu_setup.py fails when
the file is out of date.

Every comparison is appended as one JSON line to the file ``CONVC_GPU_RESULTS`` names (when
set); ``scripts/gpu_summary.py`` turns them into the summary table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from convc.targets import get_target

CASES_FILE = Path(__file__).resolve().parent / "gpu_cases.json"

DRY_RUN = os.environ.get("CONVC_GPU_DRY_RUN") == "1"
DEFAULT_LANES = "cpu:portable,cpu:tensorrt" if DRY_RUN else "cuda:portable,tensorrt:tensorrt"
TOLERANCE = {"cpu": 1e-4, "cuda": 1e-4, "tensorrt": 1e-4}
"""rtol = atol per provider, for float32 models (see the module's docstring)."""


@dataclass(frozen=True)
class Lane:
    provider: str
    target: str

    @property
    def name(self) -> str:
        return f"{self.provider} (--target {self.target})"

    @property
    def tolerance(self) -> float:
        return TOLERANCE[self.provider]

    def missing(self) -> str | None:
        """Why this lane cannot run here, or None."""
        from convc.runtime import PROVIDERS, available_providers

        if PROVIDERS[self.provider] not in available_providers():
            return f"the {self.provider} provider is not available in this onnxruntime"
        return None


def lanes() -> list[Lane]:
    result = []
    for item in os.environ.get("CONVC_GPU_LANES", DEFAULT_LANES).split(","):
        provider, _, target = item.strip().partition(":")
        get_target(target or "portable")
        result.append(Lane(provider, target or "portable"))
    return result


def gpu_provider() -> str:
    """The provider of the CLI checks: cuda, or cpu in the dry run."""
    return "cpu" if DRY_RUN else "cuda"


def device_present() -> bool:
    if os.path.exists("/dev/nvidia0"):
        return True
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def gpu_unavailable() -> str | None:
    """Why the GPU tier cannot run here (the reason its tests skip with), or None."""
    if DRY_RUN:
        return None
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return (
            "needs an NVIDIA GPU and onnxruntime-gpu (this onnxruntime has "
            + ", ".join(providers)
            + "); scripts/gpu-check.sh sets them up, and its --dry-run runs this tier on the CPU"
        )
    if not device_present():
        return "needs an NVIDIA GPU: onnxruntime-gpu is installed, but no device is (nvidia-smi -L)"
    return None


def record(**fields) -> None:
    """Append one result to the file ``CONVC_GPU_RESULTS`` names (one short JSON line, written
    at once, so that xdist's workers can share the file)."""
    path = os.environ.get("CONVC_GPU_RESULTS")
    if not path:
        return
    line = json.dumps(fields, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def cells() -> list[tuple[str, str, str]]:
    """(row, case id, text) of every matrix cell, from tests/gpu_cases.json."""
    entries = json.loads(CASES_FILE.read_text())
    return [(entry["row"], entry["id"], entry["text"]) for entry in entries]


def export_cells() -> str:
    """The text of tests/gpu_cases.json for the current case tables."""
    from matrix import all_cells

    entries = [{"row": row, "id": case_id, "text": text} for row, case_id, text in all_cells()]
    return json.dumps(entries, indent=1) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    CASES_FILE.write_text(export_cells())
    print(f"wrote {CASES_FILE}: {len(cells())} cases")

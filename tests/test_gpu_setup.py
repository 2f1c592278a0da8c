"""The GPU tier's machinery, checked on the CPU: the marker and its skip, the lanes, the case
file it reads instead of importing Keras, the results it records and the summary table that
scripts/gpu-check.sh prints (tests/gpu_tier.py, tests/test_gpu.py, scripts/gpu_summary.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from convc.diagnostics import ConvcError

import gpu_tier

ROOT = Path(__file__).resolve().parent.parent
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_summary  # noqa: E402


def test_the_case_file_is_current():
    """tests/gpu_cases.json holds the matrix's cells: python tests/gpu_tier.py rewrites it."""
    assert json.loads(gpu_tier.CASES_FILE.read_text()) == json.loads(gpu_tier.export_cells())


def test_the_tier_is_selected_by_its_marker_alone():
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tier = subprocess.run(
        [*command, "-m", "gpu", "tests/test_gpu.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    rest = subprocess.run(
        [*command, "-m", "not gpu", "tests/test_gpu.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    found = re.search(r"(\d+) tests collected", tier.stdout)
    assert found and int(found.group(1)) > len(gpu_tier.cells()), tier.stdout[-500:]
    assert "no tests collected" in rest.stdout or "deselected" in rest.stdout, rest.stdout[-500:]


def test_conftest_keeps_keras_on_the_cpu_without_hiding_the_gpu():
    text = (ROOT / "tests" / "conftest.py").read_text()
    assert "CUDA_VISIBLE_DEVICES" not in text
    assert os.environ["KERAS_TORCH_DEVICE"] == "cpu"


@pytest.mark.parametrize(
    ("providers", "device", "fragment"),
    [
        ([CPU], True, "needs an NVIDIA GPU and onnxruntime-gpu (this onnxruntime has CPU"),
        ([CUDA, CPU], False, "onnxruntime-gpu is installed, but no device is"),
        ([CUDA, CPU], True, None),
    ],
    ids=["cpu-package", "no-device", "ready"],
)
def test_why_the_tier_skips(monkeypatch, providers, device, fragment):
    import onnxruntime

    monkeypatch.setattr(gpu_tier, "DRY_RUN", False)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    monkeypatch.setattr(gpu_tier, "device_present", lambda: device)
    reason = gpu_tier.gpu_unavailable()
    assert reason is None if fragment is None else fragment in reason


def test_the_dry_run_runs_on_the_cpu(monkeypatch):
    monkeypatch.setattr(gpu_tier, "DRY_RUN", True)
    assert gpu_tier.gpu_unavailable() is None


def test_lanes(monkeypatch):
    monkeypatch.setenv("CONVC_GPU_LANES", "cuda:portable, tensorrt:tensorrt, cpu")
    assert [(lane.provider, lane.target) for lane in gpu_tier.lanes()] == [
        ("cuda", "portable"),
        ("tensorrt", "tensorrt"),
        ("cpu", "portable"),
    ]
    monkeypatch.setenv("CONVC_GPU_LANES", "cuda:nowhere")
    with pytest.raises(ConvcError, match="unknown target 'nowhere'"):
        gpu_tier.lanes()


RESULTS = [
    {
        "kind": "matrix",
        "lane": "cuda (--target portable)",
        "case": "a",
        "ok": True,
        "max_error": 1e-6,
    },
    {
        "kind": "matrix",
        "lane": "cuda (--target portable)",
        "case": "b",
        "ok": False,
        "max_error": 0.5,
        "detail": "y: max abs difference 0.5",
    },
    {
        "kind": "matrix",
        "lane": "cuda (--target portable)",
        "case": "c",
        "status": "refused",
        "detail": "no",
    },
    {
        "kind": "matrix",
        "lane": "tensorrt (--target tensorrt)",
        "case": "a",
        "status": "not run",
        "detail": "the tensorrt provider is not available",
    },
    {
        "kind": "float16",
        "lane": "cuda (--target portable)",
        "case": "tiny",
        "ok": True,
        "max_error": 2e-3,
        "float32_ms": 1.0,
        "float16_ms": 0.5,
    },
    {"kind": "cli", "lane": "convc run --provider auto", "case": "resnet_like", "ok": True},
]


def test_results_and_the_summary_table(tmp_path, monkeypatch, capsys):
    path = tmp_path / "results.jsonl"
    monkeypatch.setenv("CONVC_GPU_RESULTS", str(path))
    for result in RESULTS:
        gpu_tier.record(**result)
    assert gpu_summary.read(path) == RESULTS
    out = tmp_path / "gpu-matrix.md"
    assert gpu_summary.main([str(path), str(out), "--label", "GPU run", "--note", "a note"]) == 1
    text = out.read_text()
    assert text.startswith("# GPU matrix: GPU run\n") and "a note" in text and "Versions: " in text
    assert (
        "| cuda (--target portable) | matrix cases | 3 | 2 (1 refused) | 1 | 0 | 5.00e-01 |" in text
    )
    assert "| tensorrt (--target tensorrt) | matrix cases | 1 | 0 | 0 | 1 | - |" in text
    assert "| tiny | cuda (--target portable) | 1.000 | 0.500 | 2.00e-03 |" in text
    assert "|  | convc run --provider auto | 1 | 1 | 0 | 0 | - |" in text
    assert "- matrix, cuda (--target portable), b: y: max abs difference 0.5" in text
    assert "- tensorrt (--target tensorrt): the tensorrt provider is not available" in text
    assert text in capsys.readouterr().out


def test_an_empty_run_says_so(tmp_path):
    out = tmp_path / "gpu-matrix.md"
    assert gpu_summary.main([str(tmp_path / "absent.jsonl"), str(out)]) == 1
    assert "No results: the tier did not run" in out.read_text()


def test_the_script_parses_and_explains_itself():
    script = ROOT / "scripts" / "gpu-check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    shown = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--dry-run" in shown.stdout and "--wheels DIR" in shown.stdout
    wrong = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "unknown option --bogus" in wrong.stderr

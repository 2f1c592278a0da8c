"""The GPU tier (marker ``gpu``): what runs on the CUDA and TensorRT providers, checked as the
CPU is. It skips with the reason where no NVIDIA GPU and onnxruntime-gpu are present;
``python -m pytest -m gpu`` runs it alone, and ``scripts/gpu-check.sh`` installs what it needs,
runs it and prints one table. Lanes, tolerances and their justification: tests/gpu_tier.py.

* every per-layer case, graph case and sample of the runtime matrix on each lane, against the
  NumPy reference;
* every sample as a float16 model on each lane, with its latency beside the float32 model's;
* ``convc run --provider cuda|tensorrt|auto``, ``convc check --provider cuda`` on every sample,
  ``convc golden verify --provider cuda`` on every committed golden, and ``--io-layout
  channels_first`` on each lane.

The quick checks come first, so that a run cut short by its time limit has done them.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from convc.cli import main
from convc.compiler import model_weights, resolve_text
from convc.diagnostics import ConvcError
from convc.lower import lower
from convc.precision import FLOAT16_ATOL, FLOAT16_RTOL, to_float16
from convc.reference import model_outputs, run_reference
from convc.runtime import PROVIDERS, open_session
from convc.targets import get_target, resolve_opset

from gpu_tier import cells, gpu_provider, lanes, record

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.conv"))
GOLDENS = sorted(p for p in (ROOT / "tests" / "goldens").iterdir() if p.is_dir())
LANES = lanes()
CELLS = cells()
BATCH = 2


def _lane_or_skip(lane, kind: str, case: str):
    missing = lane.missing()
    if missing:
        record(kind=kind, lane=lane.name, case=case, status="not run", detail=missing)
        pytest.skip(missing)


def _inputs(model) -> dict[str, np.ndarray]:
    return {
        i.name: np.random.default_rng(1 + n)
        .standard_normal((i.shape[0] or BATCH, *i.shape[1:]))
        .astype(np.float32)
        for n, i in enumerate(model.inputs)
    }


def _compare(outputs, expected, rtol, atol) -> tuple[bool, float, str]:
    worst, detail = 0.0, ""
    for name, want in expected.items():
        got = np.asarray(outputs[name], dtype=np.float32)
        if got.shape != want.shape:
            return False, float("inf"), f"{name}: shape {got.shape}, expected {want.shape}"
        error = float(np.max(np.abs(got - want))) if want.size else 0.0
        worst = max(worst, error)
        if not np.allclose(got, want, rtol=rtol, atol=atol):
            detail = detail or f"{name}: max abs difference {error:.3g}"
    return not detail, worst, detail


def _build(model, weights, target: str, **options):
    chosen = get_target(target)
    return lower(model, weights, opset=resolve_opset(chosen, None), target=chosen, **options)


# -- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize("choice", sorted({lane.provider for lane in LANES} | {"auto"}))
def test_run_on_each_provider(choice, capsys):
    path = ROOT / "samples" / "resnet_like.conv"
    if choice in PROVIDERS:
        _lane_or_skip(next(lane for lane in LANES if lane.provider == choice), "cli", "run")
    status = main(["run", str(path), "--provider", choice, "--batch", "2"])
    out = capsys.readouterr().out
    got = re.search(r"runtime: ort \((\w+)", out)
    used = got.group(1) if got else "?"
    ok = status == 0 and (choice == "auto" or used == PROVIDERS[choice])
    record(
        kind="cli", lane=f"convc run --provider {choice}", case="resnet_like", ok=ok, detail=used
    )
    assert ok, out
    if choice == "auto":  # the best provider present, and the output says which
        from convc.runtime import PREFERENCE, available_providers

        best = next(PROVIDERS[p] for p in PREFERENCE if PROVIDERS[p] in available_providers())
        assert used == best or "did not start" in out, out


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_check_on_the_gpu(path, capsys):
    provider = gpu_provider()
    status = main(["check", str(path), "--provider", provider])
    out = capsys.readouterr().out
    record(kind="cli", lane=f"convc check --provider {provider}", case=path.stem, ok=status == 0)
    assert status == 0, out


@pytest.mark.parametrize("directory", GOLDENS, ids=lambda p: p.name)
def test_golden_verify_on_the_gpu(directory, capsys):
    provider = gpu_provider()
    status = main(["golden", "verify", str(directory), "--provider", provider])
    out = capsys.readouterr().out
    record(
        kind="cli",
        lane=f"convc golden verify --provider {provider}",
        case=directory.name,
        ok=status == 0,
    )
    assert status == 0, out


@pytest.mark.parametrize("lane", LANES, ids=lambda lane: f"{lane.provider}-{lane.target}")
def test_io_layout_channels_first(lane, tmp_path, capsys):
    """A channels_last sample with channels-first inputs and outputs, on the lane's provider,
    agrees with the same model on the CPU (itself checked against Keras by tests/test_cli.py)."""
    _lane_or_skip(lane, "cli", "io-layout")
    path = ROOT / "samples" / "resnet_like.conv"
    outputs = {}
    for provider in (lane.provider, "cpu"):
        out = tmp_path / f"{provider}.npz"
        argv = ["run", str(path), "--io-layout", "channels_first", "--target", lane.target]
        assert main([*argv, "--provider", provider, "--batch", "2", "-o", str(out)]) == 0
        with np.load(out) as saved:
            outputs[provider] = dict(saved)
    capsys.readouterr()
    ok, worst, detail = _compare(
        outputs[lane.provider], outputs["cpu"], lane.tolerance, lane.tolerance
    )
    record(
        kind="cli",
        lane=f"convc run --io-layout channels_first --provider {lane.provider}",
        case=f"resnet_like --target {lane.target}",
        ok=ok,
        max_error=worst,
        detail=detail,
    )
    assert ok, detail


# -- float16 models ---------------------------------------------------------------------------


def _latency_ms(session, inputs, runs: int = 20) -> float:
    session.run(inputs)  # warm-up: the first run allocates and (TensorRT) builds
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(inputs)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


@pytest.mark.parametrize("lane", LANES, ids=lambda lane: f"{lane.provider}-{lane.target}")
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_float16_sample(path, lane):
    _lane_or_skip(lane, "float16", path.stem)
    model = resolve_text(path.read_text())
    weights = model_weights(model, None, seed=0)
    inputs = _inputs(model)
    expected = model_outputs(model, run_reference(model, weights, inputs))
    full = _build(model, weights, lane.target)
    try:
        half_session = open_session(to_float16(full), lane.provider)
        outputs = half_session.run(inputs)
    except ConvcError as error:
        record(kind="float16", lane=lane.name, case=path.stem, ok=False, detail=error.message)
        raise
    ok, worst, detail = _compare(outputs, expected, FLOAT16_RTOL, FLOAT16_ATOL)
    full_session = open_session(full, lane.provider)
    record(
        kind="float16",
        lane=lane.name,
        case=path.stem,
        ok=ok,
        max_error=worst,
        detail=detail,
        float32_ms=_latency_ms(full_session, inputs),
        float16_ms=_latency_ms(half_session, inputs),
    )
    assert ok, detail


# -- the matrix -------------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "case_id", "text"), CELLS, ids=[c[1] for c in CELLS])
def test_matrix_case(row, case_id, text):
    """Every lane runs the case (built for the lane's target) and agrees with the reference;
    a case the target refuses to lower passes, as in the runtime matrix."""
    model = resolve_text(text)
    weights = model_weights(model, None, seed=0)
    inputs = _inputs(model)
    expected = model_outputs(model, run_reference(model, weights, inputs))
    failures = []
    for lane in LANES:
        missing = lane.missing()
        if missing:
            record(kind="matrix", lane=lane.name, case=case_id, status="not run", detail=missing)
            continue
        try:
            proto = _build(model, weights, lane.target)
        except ConvcError as error:
            record(
                kind="matrix", lane=lane.name, case=case_id, status="refused", detail=error.message
            )
            continue
        try:
            outputs = open_session(proto, lane.provider).run(inputs)
        except ConvcError as error:
            record(kind="matrix", lane=lane.name, case=case_id, ok=False, detail=error.message)
            failures.append(f"{lane.name}: {error.message}")
            continue
        ok, worst, detail = _compare(outputs, expected, lane.tolerance, lane.tolerance)
        record(kind="matrix", lane=lane.name, case=case_id, ok=ok, max_error=worst, detail=detail)
        if not ok:
            failures.append(f"{lane.name}: {detail}")
    assert not failures, "; ".join(failures)

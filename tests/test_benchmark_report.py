"""benchmarks/run.py's judgement and report, on figures made up for the purpose: the targets'
verdicts, the ratio's estimator, and how failed, disagreeing and timed peers are shown (the
benchmark itself takes the exporters' environments and half an hour, so it is not run here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _timing(median: float, blocks: list[float]) -> dict:
    return {"median": median, "p10": median * 0.9, "p90": median * 1.1, "block_medians": blocks}


def _net(kind: str, convc_ms: float, peer_ms: float, **extra) -> dict:
    entry = {
        "kind": kind,
        "gflop": 1.0,
        "weights": "random",
        "build_s": 0.3,
        "build_peak_mib": 60.0,
        "weights_mib": 10.0,
        "nodes": 13,
        "transposes": 2,
        "ort_ms": _timing(convc_ms, [convc_ms, convc_ms * 1.5]),
        "gflops_per_s": 100.0,
        "output_max_abs": 2.0,
        "other_load_cores": {"ort": 0.01},
        "check_s": 0.5,
        "check_beyond_startup_s": 0.1,
        "check_over_ort": 50.0,
        "check_less_startup_over_ort": 25.0 if kind == "application" else 10.0,
        "exporters": {
            "keras-torch": {"error": "SymbolicValueError: onnx memory_format"},
            "keras-tf": {
                "variant": "keras model.export",
                "fallbacks": [],
                "input_layout": "as the .conv (Keras)",
                "export_s": 4.0,
                "nodes": 30,
                "transposes": 1,
                "max_abs_diff": 0.5,
                "error": "output disagrees with convc's (max abs difference 0.5, bound 0.0002)",
            },
            "torch-native": {
                "variant": "torch.onnx dynamo",
                "fallbacks": [],
                "input_layout": "channels_first (torch's own)",
                "export_s": 5.0,
                "nodes": 10,
                "transposes": 0,
                "max_abs_diff": 1e-6,
                "ort_ms": _timing(peer_ms, [peer_ms, peer_ms * 1.5]),
                "gflops_per_s": 90.0,
            },
        },
        "best_exporter": "torch-native",
        "convc_over_best": round(convc_ms / peer_ms, 3),
        "convc_over_best_blocks": [round(convc_ms / peer_ms, 3)] * 2,
        **extra,
    }
    return entry


def _results(run, nets: dict) -> dict:
    results = {
        "nets": nets,
        "scaling": {"1000": {"build_s": 0.7, "peak_mib": 88.0}},
        "memory": {"weights_mib": 216.0, "build_s": 1.9, "peak_mib": 431.0, "bound_mib": 648.0},
        "skipped": [],
        "profiles": {},
        "startup": {"import_convc_cli_s": 0.04, "trivial_check_s": 0.35},
        "machine": {
            "date": "2026-11-30",
            "python": "3.11",
            "cpu_count": 2,
            "processor": "x86_64",
            "onnxruntime": "1.32.0",
            "onnx": "1.23.2",
            "convc_commit": "abc",
            "exporter_versions": {},
            "command": "python benchmarks/run.py",
            "protocol": "batch 1",
        },
    }
    results["summary"] = run.summary(results)
    return results


def test_targets_are_judged_on_the_figures(run):
    nets = {
        "fast": _net("conv", 4.0, 5.0),
        "ResNet50": _net("application", 10.0, 9.5, build_s=1.1, build_peak_mib=220.0,
                         weights_mib=98.0),
    }  # fmt: skip
    s = run.summary(_results(run, nets))
    assert s["convc_over_best"] == {"fast": 0.8, "ResNet50": 1.053}
    assert s["geomean_convc_over_best"] == pytest.approx((0.8 * 1.053) ** 0.5, abs=1e-3)
    assert s["nets_slower_than_best"] == ["ResNet50"] and not s["target_every_net_at_most_best"]
    assert s["target_resnet50_build_under_2_s_and_3x_weights"]  # 220 MiB < 3 x 98
    assert s["target_build_conv_nets_under_0.5_s"]
    # 13 - 2 Transposes against torch-native's 10; the disagreeing keras-tf's 29 set no bar
    assert s["fewest_peer_nodes_without_transposes"]["fast"] == 10
    assert s["nets_with_more_nodes_than_fewest_peer"] == ["ResNet50", "fast"]
    assert s["nets_check_over_20_inferences"] == ["ResNet50"]


def test_a_heavier_build_fails_its_target(run):
    nets = {"ResNet50": _net("application", 10.0, 9.5, build_s=1.1, build_peak_mib=300.0,
                             weights_mib=98.0)}  # fmt: skip
    assert not run.summary(_results(run, nets))["target_resnet50_build_under_2_s_and_3x_weights"]


def test_the_report_shows_failed_disagreeing_and_timed_peers(run):
    nets = {"ResNet50": _net("application", 10.0, 9.5), "fast": _net("conv", 4.0, 5.0)}
    text = run.markdown(_results(run, nets))
    row = next(line for line in text.splitlines() if line.startswith("| fast | 1.00 |"))
    assert "| failed | disagrees | 5.00 [4.50, 5.50] |" in row, row
    assert text.index("| fast |") < text.index("| ResNet50 |")  # .conv nets first
    assert "output disagrees with convc's" in text
    assert "failed: SymbolicValueError" in text
    assert "geometric mean of convc / best peer at most 0.90: 0.918, not met" in text

"""Test setup: Keras (the oracle) runs on the torch backend, on the CPU, deterministically.

Keras is kept on the CPU by ``KERAS_TORCH_DEVICE`` (a GPU would compute its float32 products in
TF32), not by hiding the GPU: onnxruntime must still see it for the GPU tier. Tests marked
``gpu`` (tests/test_gpu.py) skip, with the reason, where no GPU and no onnxruntime-gpu are
present (``tests/gpu_tier.py``); ``python -m pytest -m gpu`` runs that tier alone.

Under CI (``CI`` set, as .ci/run runs) Hypothesis draws the same examples every run, so that a
red CI reproduces; elsewhere it explores, and prints the seed of a failure.
"""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")

try:
    from hypothesis import settings
except ImportError:  # a GPU machine set up for the gpu tier alone (scripts/gpu-check.sh)
    settings = None
if settings is not None:
    settings.register_profile("ci", derandomize=True, print_blob=True)
    settings.register_profile("explore", print_blob=True)
    settings.load_profile("ci" if os.environ.get("CI") else "explore")


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from gpu_tier import gpu_unavailable

    reason = gpu_unavailable()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))

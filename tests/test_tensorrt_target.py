"""The ``tensorrt`` target's lowering, checked on the CPU: every per-layer case, graph case and
sample of the runtime matrix is built with ``--target tensorrt`` (4-D-only Resize, Resize of
inner axes only, opset 17) and run in onnxruntime's CPU provider against the NumPy reference, so
that only TensorRT itself waits for a GPU (the GPU tier, tests/test_gpu.py, runs the same models
in TensorRT). A case the target refuses to lower counts as a pass, as in the matrix.
"""

from __future__ import annotations

import pytest

from convc.targets import get_target

from matrix import FAIL, NOT_RUN, all_cells, evaluate

CELLS = all_cells()


@pytest.mark.parametrize(("row", "case_id", "text"), CELLS, ids=[c[1] for c in CELLS])
def test_tensorrt_target_in_onnxruntime_cpu(row, case_id, text):
    cell = evaluate(text, "ort", "tensorrt")
    assert cell.status not in (FAIL, NOT_RUN), cell.detail


def test_the_target_takes_tensorrts_choices():
    target = get_target("tensorrt")
    assert target.resize_ranks == {4} and target.resize_inner_axes_only
    assert target.opset == 17 and target.max_opset == 22

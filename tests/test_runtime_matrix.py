"""The portability matrix as tests: every per-layer case and sample, built for the default
``portable`` target and for each runtime's own target, runs in that runtime and agrees with the
NumPy reference. A runtime that is not installed skips with the reason; CI installs them all
(``pip install -e ".[test,runtimes]"``). ``python tests/matrix.py`` renders the same cells into
the README's table.
"""

from __future__ import annotations

import pytest

from matrix import COLUMNS, FAIL, NOT_RUN, all_cells, evaluate

CELLS = all_cells()


@pytest.mark.parametrize(("target", "runtime"), COLUMNS, ids=[f"{t}@{r}" for t, r in COLUMNS])
@pytest.mark.parametrize(("row", "case_id", "text"), CELLS, ids=[c[1] for c in CELLS])
def test_runs_and_agrees(row, case_id, text, target, runtime):
    cell = evaluate(text, runtime, target)
    if cell.status == NOT_RUN:
        pytest.skip(cell.detail)
    assert cell.status != FAIL, cell.detail

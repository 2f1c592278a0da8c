"""The portability matrix as tests: every per-layer case and sample, built for the default
``portable`` target and for each runtime's own target, runs in that runtime and agrees with the
NumPy reference, with random weights (biases and statistics too). A refusal fails unless
``matrix.EXPECTED_REFUSALS`` lists it. A runtime that is not installed skips with the reason;
CI installs them all
(``pip install -e ".[test,runtimes]"``). ``python tests/matrix.py`` renders the same cells into
the table of docs/runtimes.md.
"""

from __future__ import annotations

import fnmatch

import pytest

from convc.diagnostics import ConvcError

import matrix
from matrix import COLUMNS, FAIL, NOT_RUN, PASS, REFUSED, all_cells, evaluate

CELLS = all_cells()


@pytest.mark.parametrize(("target", "runtime"), COLUMNS, ids=[f"{t}@{r}" for t, r in COLUMNS])
@pytest.mark.parametrize(("row", "case_id", "text"), CELLS, ids=[c[1] for c in CELLS])
def test_runs_and_agrees(row, case_id, text, target, runtime):
    cell = evaluate(text, runtime, target, case_id)
    if cell.status == NOT_RUN:
        pytest.skip(cell.detail)
    assert cell.status != FAIL, cell.detail


# -- a refusal is a failure unless it is expected ---------------------------------------------

TINY = 'Input(shape=(4, 4, 2))\nConv2D(3, 1, name="c")\n'


def refuse(*args, **kwargs):
    raise ConvcError("this target cannot do that")


@pytest.mark.parametrize(
    ("listed", "refuses", "status", "detail"),
    [
        ([], True, FAIL, "refused, and EXPECTED_REFUSALS does not list it: this target cannot"),
        ([("tiny-*", "portable@ort", "cannot do")], True, REFUSED, "this target cannot do that"),
        ([("tiny-*", "portable@ort", "another reason")], True, FAIL, "does not list it"),
        ([("tiny-*", "*@opencv", "cannot do")], True, FAIL, "does not list it"),
        ([("tiny-*", "portable@ort", "cannot do")], False, FAIL, "lists a refusal (cannot do)"),
        ([], False, PASS, ""),
    ],
    ids=["unlisted", "listed", "other-reason", "other-column", "listed-but-builds", "builds"],
)
def test_only_expected_refusals_pass(monkeypatch, listed, refuses, status, detail):
    monkeypatch.setattr(matrix, "EXPECTED_REFUSALS", listed)
    if refuses:
        monkeypatch.setattr(matrix, "lower", refuse)
    cell = evaluate(TINY, "ort", "portable", "tiny-conv")
    assert cell.status == status
    assert detail in cell.detail


def test_every_expected_refusal_names_a_column():
    columns = {f"{t}@{r}" for t, r in COLUMNS}
    for case, column, reason in matrix.EXPECTED_REFUSALS:
        assert any(fnmatch.fnmatchcase(c, column) for c in columns), column
        assert any(fnmatch.fnmatchcase(c[1], case) for c in CELLS), case
        assert reason


def test_ort_has_its_own_target_column():
    assert ("ort", "ort") in COLUMNS and ("portable", "ort") in COLUMNS


def test_cells_draw_weights_that_exercise_biases(monkeypatch):
    """A runtime (here: a model) that drops a bias fails its cell."""
    text = 'Input(shape=(4, 4, 2))\nConv2D(3, 1, name="c")\nBatchNormalization(name="bn")\n'
    lower = matrix.lower

    def without_biases(model, weights, **options):
        weights = {
            layer: {k: (0 * v if k in ("bias", "moving_mean") else v) for k, v in arrays.items()}
            for layer, arrays in weights.items()
        }
        return lower(model, weights, **options)

    assert evaluate(text, "ort", "portable", "c").status == PASS
    monkeypatch.setattr(matrix, "lower", without_biases)
    cell = evaluate(text, "ort", "portable", "c")
    assert cell.status == FAIL and "max abs difference" in cell.detail

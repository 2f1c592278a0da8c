"""Random model files that Keras 3 itself wrote must build in convc and compute what Keras did.

A few dozen files of the seeded generator in benchmarks/corpus/random_files.py (the random graphs
of tests/test_random_graphs.py, random weights in every variable, BatchNormalization statistics
included): each graph is saved by Keras as ``.keras``, legacy ``.h5`` and ``to_json()`` with
``save_weights(".weights.h5")``, and every file must build and agree with Keras's prediction by
convc's rule. A refusal is a failure; a counter checks that every file really compared numbers.
The tf_keras side and the few hundred graphs run outside the test suite
(``python benchmarks/corpus/random_files.py``, docs/development.md).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks" / "corpus"))

import random_files  # noqa: E402

GRAPHS = 10
SEED = 2024
COMPARED: Counter[str] = Counter()
"""Files whose outputs were compared with Keras's, by format, in this process."""

pytestmark = pytest.mark.filterwarnings(
    "ignore:You are saving your model as an HDF5 file:UserWarning",
    "ignore:The structure of `inputs` doesn't match the expected structure:UserWarning",
)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    drawn = random_files.draw_texts(GRAPHS, SEED)
    assert len(drawn) == GRAPHS
    return drawn


@pytest.mark.parametrize("index", range(GRAPHS), ids=[f"graph{i}" for i in range(GRAPHS)])
def test_every_file_keras_writes_builds_and_matches_keras(texts, index, tmp_path):
    text = texts[index]
    made = random_files.keras_files(text, tmp_path, f"g{index}")
    assert "error" not in made, f"{made.get('error')}\n--- the graph ---\n{text}"
    assert sorted(made["files"]) == sorted(random_files.FORMATS["keras"])
    for form, (path, weights) in made["files"].items():
        outcome = random_files.convc_outcome(path, weights, made["inputs"], made["outputs"])
        assert outcome["status"] == "match", f"{form}: {outcome}\n--- the graph ---\n{text}"
        COMPARED[form] += 1


def test_every_file_compared_numbers():
    """A skipped or refused file is no pass: all 3 files of every graph compared numbers."""
    if not COMPARED:
        pytest.skip("test_every_file_keras_writes_builds_and_matches_keras did not run here")
    expected = {form: GRAPHS for form in random_files.FORMATS["keras"]}
    assert expected == dict(COMPARED), COMPARED
